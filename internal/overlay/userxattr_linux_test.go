package overlay

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/internal/userns"
	"github.com/layercommit/layercommit/internal/userns/testuser"
)

// TestMain lets the test binary, run as an ordinary user with
// OVERLAY_PROBE=DIR, re-execute itself in a user namespace (as the CLI
// does) and mount there (userxattrProbe).
func TestMain(m *testing.M) {
	userns.Main()
	if dir := os.Getenv("OVERLAY_PROBE"); dir != "" {
		if userns.Needed() {
			code, err := userns.Reexec(userns.Config{}, os.Args[1:])
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			os.Exit(code)
		}
		if err := userxattrProbe(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// userxattrProbe runs inside the user namespace: for each of Mount's two
// ways to the kernel it mounts DIR/<way>/{l1,l0} with a fresh upper,
// changes the merged view and prints what it saw.
func userxattrProbe(dir string) error {
	for _, p := range paths {
		forceLegacy = p.legacy
		d := filepath.Join(dir, p.name)
		m := filepath.Join(d, "merged")
		if err := Mount(m, Options{Lowers: []string{filepath.Join(d, "l1"), filepath.Join(d, "l0")},
			Upper: filepath.Join(d, "upper"), Work: filepath.Join(d, "work"), UserXattr: true}); err != nil {
			return err
		}
		ents, err := os.ReadDir(filepath.Join(m, "opaque"))
		if err != nil {
			return err
		}
		fmt.Printf("%s: opaque has %d entries\n", p.name, len(ents))
		steps := []struct {
			what string
			err  error
		}{
			{"rm file", os.Remove(filepath.Join(m, "file"))},
			{"rm -r dir", os.RemoveAll(filepath.Join(m, "dir"))},
			{"mkdir dir", os.Mkdir(filepath.Join(m, "dir"), 0o755)},
			{"create owned", os.WriteFile(filepath.Join(m, "owned"), []byte("x"), 0o4755)},
			{"chown owned", os.Lchown(filepath.Join(m, "owned"), 1500, 1501)},
			{"chmod owned", unix.Chmod(filepath.Join(m, "owned"), 0o4755)},
		}
		for _, s := range steps {
			if s.err != nil {
				return fmt.Errorf("%s: %s: %w", p.name, s.what, s.err)
			}
		}
		err = os.Rename(filepath.Join(m, "keep"), filepath.Join(m, "moved"))
		fmt.Printf("%s: rename lower dir: %v\n", p.name, errors.Is(err, unix.EXDEV))
		if err := unix.Unmount(m, 0); err != nil {
			return err
		}
	}
	return nil
}

// TestMountUserXattr: an ordinary user (through the user namespace
// internal/userns makes) mounts an overlay with UserXattr by both ways
// to the kernel: a lower dir marked opaque with user.overlay.opaque hides
// the one below, a deleted file becomes a whiteout (character device
// 0/0), a dir deleted and made again is marked opaque in user.overlay.*
// (never trusted.overlay.*), a lower dir cannot be renamed (no
// redirects), and a file chowned to 1500:1501 inside is stored as the
// user's subordinate ids, its setuid bit kept.
func TestMountUserXattr(t *testing.T) {
	u := testuser.New(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := testuser.Executable(t, self)
	dir := u.Dir(t)
	for _, p := range paths {
		d := filepath.Join(dir, p.name)
		mkdirs(t, filepath.Join(d, "l0", "opaque"), filepath.Join(d, "l0", "dir", "sub"), filepath.Join(d, "l0", "keep"),
			filepath.Join(d, "l1", "opaque"), filepath.Join(d, "upper"), filepath.Join(d, "work"), filepath.Join(d, "merged"))
		write(t, filepath.Join(d, "l0", "opaque", "hidden"), "x")
		write(t, filepath.Join(d, "l0", "file"), "x")
		write(t, filepath.Join(d, "l0", "dir", "sub", "f"), "x")
		if err := unix.Lsetxattr(filepath.Join(d, "l1", "opaque"), "user.overlay.opaque", []byte("y"), 0); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("chown", "-R", fmt.Sprintf("%d:%d", u.UID, u.GID), dir).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v: %s", err, out)
	}
	out := testuser.Output(t, u.Command([]string{"OVERLAY_PROBE=" + dir}, bin))
	want := "fsconfig: opaque has 0 entries\nfsconfig: rename lower dir: true\nmount2: opaque has 0 entries\nmount2: rename lower dir: true\n"
	if out != want {
		t.Fatalf("probe printed\n%s\nwant\n%s", out, want)
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			upper := filepath.Join(dir, p.name, "upper")
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(upper, "file"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
				t.Errorf("upper/file: %v, mode %o rdev %d; want a whiteout", err, st.Mode, st.Rdev)
			}
			v := make([]byte, 8)
			if n, err := unix.Lgetxattr(filepath.Join(upper, "dir"), "user.overlay.opaque", v); err != nil || string(v[:n]) != "y" {
				t.Errorf("upper/dir user.overlay.opaque: %q, %v; want y", v[:n], err)
			}
			if err := unix.Lstat(filepath.Join(upper, "owned"), &st); err != nil {
				t.Fatal(err)
			}
			if int(st.Uid) != u.HostID(1500) || int(st.Gid) != u.HostID(1501) || st.Mode&0o7777 != 0o4755 {
				t.Errorf("upper/owned is %d:%d mode %o; want %d:%d 4755", st.Uid, st.Gid, st.Mode&0o7777, u.HostID(1500), u.HostID(1501))
			}
			// Nothing of overlay's in trusted.*: the user cannot write it.
			err := filepath.Walk(upper, func(p string, fi os.FileInfo, err error) error {
				if err != nil {
					return err
				}
				sz, _ := unix.Llistxattr(p, nil)
				buf := make([]byte, sz)
				n, _ := unix.Llistxattr(p, buf)
				for _, name := range strings.Split(string(buf[:n]), "\x00") {
					if strings.HasPrefix(name, "trusted.") {
						t.Errorf("%s has %s", p, name)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
