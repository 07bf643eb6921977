package safepath

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestAtToolkit: each operation works on one name in a directory and
// never follows a symlink there; what the symlink points at is untouched.
func TestAtToolkit(t *testing.T) {
	cases := []struct {
		name string
		op   func(dirfd int) error
		// check inspects the directory afterwards.
		check func(t *testing.T, dir string)
	}{
		{"WriteFileAt replaces a symlink, not its target", func(fd int) error {
			return WriteFileAt(fd, "link", strings.NewReader("new"), nil, func(*os.File) error { return nil }, time.Unix(5, 0))
		}, func(t *testing.T, dir string) {
			if b, _ := os.ReadFile(filepath.Join(dir, "victim")); string(b) != "victim" {
				t.Errorf("victim is %q", b)
			}
			fi, err := os.Lstat(filepath.Join(dir, "link"))
			if err != nil || !fi.Mode().IsRegular() || fi.ModTime().Unix() != 5 {
				t.Errorf("link is now %v %v", fi, err)
			}
		}},
		{"EnsureDirAt replaces a file and keeps a dir", func(fd int) error {
			if err := EnsureDirAt(fd, "victim", 0o755); err != nil {
				return err
			}
			return EnsureDirAt(fd, "sub", 0o755)
		}, func(t *testing.T, dir string) {
			for _, n := range []string{"victim", "sub"} {
				if fi, err := os.Lstat(filepath.Join(dir, n)); err != nil || !fi.IsDir() {
					t.Errorf("%s is %v %v", n, fi, err)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "sub", "kept")); err != nil {
				t.Errorf("sub lost its contents: %v", err)
			}
		}},
		{"OpenDirAt refuses a symlink to a dir", func(fd int) error {
			_, err := OpenDirAt(fd, "dirlink")
			if !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.ENOTDIR) {
				return errors.New("opened through a symlink")
			}
			return nil
		}, func(*testing.T, string) {}},
		{"DirCache refuses a symlink on the way", func(fd int) error {
			dc := NewDirCache(fd)
			defer dc.Close()
			if _, err := dc.Open("sub"); err != nil {
				return err
			}
			if _, err := dc.Open("dirlink/x"); err == nil {
				return errors.New("walked through a symlink")
			}
			return nil
		}, func(*testing.T, string) {}},
		{"CreateAt refuses an existing name", func(fd int) error {
			if _, err := CreateAt(fd, "victim", 0o600); !errors.Is(err, unix.EEXIST) {
				return errors.New("created over an existing file")
			}
			return nil
		}, func(*testing.T, string) {}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			must := func(err error) {
				if err != nil {
					t.Fatal(err)
				}
			}
			must(os.WriteFile(filepath.Join(dir, "victim"), []byte("victim"), 0o644))
			must(os.Symlink("victim", filepath.Join(dir, "link")))
			must(os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
			must(os.WriteFile(filepath.Join(dir, "sub", "kept"), nil, 0o644))
			must(os.Symlink("sub", filepath.Join(dir, "dirlink")))
			d, err := os.Open(dir)
			must(err)
			defer d.Close()
			must(tc.op(int(d.Fd())))
			tc.check(t, dir)
		})
	}
}
