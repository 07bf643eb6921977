package containersstorage_test

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/containersstorage"
)

const (
	ctrID   = "1111111111111111111111111111111111111111111111111111111111111111"
	layerID = "2222222222222222222222222222222222222222222222222222222222222222"
	baseID  = "3333333333333333333333333333333333333333333333333333333333333333"
)

// fakeStore writes the records of one container on one base layer.
func fakeStore(t *testing.T) (root, run string) {
	t.Helper()
	dir := t.TempDir()
	root, run = filepath.Join(dir, "root"), filepath.Join(dir, "run")
	files := map[string]string{
		"overlay-containers/containers.json": `[{"id":"` + ctrID + `","names":["web"],"image":"` + baseID + `","layer":"` + layerID + `"}]`,
		"overlay-containers/containers.lock": "",
		"overlay-layers/layers.json":         `[{"id":"` + baseID + `","diff-digest":"sha256:` + baseID + `"},{"id":"` + layerID + `","parent":"` + baseID + `"}]`,
		"overlay-layers/layers.lock":         "",
		"overlay-images/images.json":         `[]`,
		"overlay-images/images.lock":         "",
	}
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{baseID, layerID} {
		if err := os.MkdirAll(filepath.Join(root, "overlay", id, "diff"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return root, run
}

// TestMain doubles as the lock holder: with LOCK_HOLDER set it takes a
// write fcntl lock on that file, says so, and waits to be killed.
func TestMain(m *testing.M) {
	if p := os.Getenv("LOCK_HOLDER"); p != "" {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			os.Exit(2)
		}
		lk := unix.Flock_t{Type: unix.F_WRLCK}
		if err := unix.FcntlFlock(f.Fd(), unix.F_SETLKW, &lk); err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("locked\n")
		time.Sleep(time.Hour)
	}
	os.Exit(m.Run())
}

// holdLock has another process write-lock path until the test ends.
func holdLock(t *testing.T, path string) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "LOCK_HOLDER="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "locked\n" {
		t.Fatalf("lock holder said %q", line)
	}
}

func TestStoreBadInput(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, root string)
		ref   string
		want  error
		msg   string
	}{
		{name: "found", ref: "web"},
		{name: "by prefix", ref: ctrID[:12]},
		{name: "no such container", ref: "nope", want: containersstorage.ErrNotFound, msg: `no container "nope"`},
		{name: "vfs store", setup: func(t *testing.T, root string) {
			os.RemoveAll(filepath.Join(root, "overlay-layers"))
			os.MkdirAll(filepath.Join(root, "vfs-layers"), 0o700)
		}, ref: "web", want: containersstorage.ErrLayout, msg: "uses the vfs driver"},
		{name: "records of another layout", setup: func(t *testing.T, root string) {
			os.WriteFile(filepath.Join(root, "overlay-containers/containers.json"), []byte(`{"containers":{}}`), 0o600)
		}, ref: "web", want: containersstorage.ErrLayout, msg: "containers.json"},
		{name: "layer dir gone", setup: func(t *testing.T, root string) {
			os.RemoveAll(filepath.Join(root, "overlay", baseID))
		}, ref: "web", want: containersstorage.ErrCorrupt, msg: "has no diff dir"},
		{name: "locked", setup: func(t *testing.T, root string) {
			holdLock(t, filepath.Join(root, "overlay-containers/containers.lock"))
		}, ref: "web", want: containersstorage.ErrLocked, msg: "containers.lock held by another process"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, run := fakeStore(t)
			if tc.setup != nil {
				tc.setup(t, root)
			}
			s, err := containersstorage.Open(root, run)
			if err == nil {
				s.LockTimeout = 200 * time.Millisecond
				var c *containersstorage.Container
				if c, err = s.Container(tc.ref); err == nil {
					if c.ID != ctrID || c.UpperDir != filepath.Join(root, "overlay", layerID, "diff") || len(c.Lowers) != 1 || c.Lowers[0] != filepath.Join(root, "overlay", baseID, "diff") {
						t.Fatalf("container %+v", c)
					}
				}
			}
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, want %v containing %q on one line", err, tc.want, tc.msg)
			}
		})
	}
}
