package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/internal/oracle"
)

// TestUserNamespaceForm: in a user namespace (the test binary run again
// in one, where mknod of a device is refused), WithDeviceSkip skips the
// character and block devices, reporting each, while fifos and overlay
// whiteouts (0/0, which any user may make) are made; WithUserXattr marks
// opaque dirs with user.overlay.opaque and nothing with trusted.*.
// Without WithDeviceSkip the device is an error. WithUnmappedOwners
// leaves entries whose owner the namespace does not map owned by 0.
func TestUserNamespaceForm(t *testing.T) {
	if os.Getenv("UNPACK_IN_USERNS") == "" {
		oracle.Root(t)
		cmd := exec.Command(os.Args[0], "-test.run=^TestUserNamespaceForm$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "UNPACK_IN_USERNS=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUSER,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 65536}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 65536}}}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestUserNamespaceForm") {
			t.Fatalf("in a user namespace: %v\n%s", err, out)
		}
		return
	}
	layer := tarOf(dir("dev/", 0o755), node("dev/null", tar.TypeChar, 1, 3), node("dev/sda", tar.TypeBlock, 8, 0),
		node("dev/fifo", tar.TypeFifo, 0, 0), file(".wh.gone", ""), dir("d/", 0o755), file("d/.wh..wh..opq", ""), file("d/new", "n"))
	root := t.TempDir()
	var skipped []string
	_, err := Apply(context.Background(), root, bytes.NewReader(layer), WithOverlayForm(), WithUserXattr(),
		WithDeviceSkip(func(name string, err error) {
			if !errors.Is(err, unix.EPERM) {
				t.Errorf("%s skipped for %v", name, err)
			}
			skipped = append(skipped, name)
		}))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"dev/null", "dev/sda"}; !reflect.DeepEqual(skipped, want) {
		t.Errorf("skipped %v, want %v", skipped, want)
	}
	var st unix.Stat_t
	for _, tc := range []struct {
		name string
		mode uint32
	}{{"dev/fifo", unix.S_IFIFO}, {"gone", unix.S_IFCHR}} {
		if err := unix.Lstat(filepath.Join(root, tc.name), &st); err != nil || st.Mode&unix.S_IFMT != tc.mode || st.Rdev != 0 {
			t.Errorf("%s: %v, mode %o; want type %o", tc.name, err, st.Mode, tc.mode)
		}
	}
	for _, name := range []string{"dev/null", "dev/sda"} {
		if _, err := os.Lstat(filepath.Join(root, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v, want it skipped", name, err)
		}
	}
	buf := make([]byte, 8)
	if n, err := unix.Lgetxattr(filepath.Join(root, "d"), "user.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("d: user.overlay.opaque = %q, %v", buf[:n], err)
	}
	if _, err := unix.Lgetxattr(filepath.Join(root, "d"), "trusted.overlay.opaque", buf); err == nil {
		t.Error("d has trusted.overlay.opaque")
	}
	_, err = Apply(context.Background(), t.TempDir(), bytes.NewReader(layer), WithOverlayForm(), WithUserXattr())
	if !errors.Is(err, unix.EPERM) || !strings.Contains(err.Error(), "dev/null") {
		t.Errorf("without WithDeviceSkip: %v, want EPERM naming dev/null", err)
	}

	// An owner the namespace does not map (it maps 0..65535).
	far := file("far", "x")
	far.h.Uid, far.h.Gid = 70000, 70001
	farDir := dir("fardir/", 0o755)
	farDir.h.Uid = 70000
	farLink := symlink("farlink", "far")
	farLink.h.Gid = 70001
	owned := tarOf(far, farDir, farLink, file(".wh.gone", ""))
	root = t.TempDir()
	if _, err := Apply(context.Background(), root, bytes.NewReader(owned), WithOverlayForm(), WithUnmappedOwners()); err != nil {
		t.Fatalf("WithUnmappedOwners: %v", err)
	}
	for _, name := range []string{"far", "fardir", "farlink", "gone"} {
		if err := unix.Lstat(filepath.Join(root, name), &st); err != nil || st.Uid != 0 || st.Gid != 0 {
			t.Errorf("%s: %v, owner %d:%d; want 0:0", name, err, st.Uid, st.Gid)
		}
	}
	if _, err := Apply(context.Background(), t.TempDir(), bytes.NewReader(owned), WithOverlayForm()); !errors.Is(err, unix.EINVAL) {
		t.Errorf("an unmapped owner without WithUnmappedOwners: %v, want EINVAL", err)
	}
}
