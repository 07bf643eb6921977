package oracle

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Snapshot is an active snapshot of a private containerd's overlayfs
// snapshotter, as ctr snapshots mounts describes it.
type Snapshot struct {
	Key string
	// Options are the overlay mount options containerd gives.
	Options string
	// Lowers (top first), Upper and Work are the snapshot's dirs.
	Lowers      []string
	Upper, Work string
}

// CommittedSnapshots lists the keys of c's committed snapshots
// (ctr snapshots ls).
func (c *Containerd) CommittedSnapshots(t testing.TB) []string {
	t.Helper()
	var keys []string
	for _, line := range strings.Split(c.Run(t, "snapshots", "ls"), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 2 && f[len(f)-1] == "Committed" {
			keys = append(keys, f[0])
		}
	}
	return keys
}

// PrepareSnapshot makes an active snapshot key on parent (ctr snapshots
// prepare) and reads its dirs from ctr snapshots mounts.
func (c *Containerd) PrepareSnapshot(t testing.TB, key, parent string) Snapshot {
	t.Helper()
	c.Run(t, "snapshots", "prepare", key, parent)
	out := c.Run(t, "snapshots", "mounts", "/mnt", key)
	f := strings.Fields(out)
	s := Snapshot{Key: key}
	for i := range f {
		if f[i] == "-o" && i+1 < len(f) {
			s.Options = f[i+1]
		}
	}
	if len(f) < 4 || f[0] != "mount" || f[2] != "overlay" || s.Options == "" {
		t.Fatalf("ctr snapshots mounts %s: not an overlay mount: %q", key, out)
	}
	for _, o := range strings.Split(s.Options, ",") {
		k, v, _ := strings.Cut(o, "=")
		switch k {
		case "lowerdir":
			s.Lowers = strings.Split(v, ":")
		case "upperdir":
			s.Upper = v
		case "workdir":
			s.Work = v
		}
	}
	if s.Upper == "" || len(s.Lowers) == 0 {
		t.Fatalf("ctr snapshots mounts %s: no upper or lower dir in %q", key, s.Options)
	}
	return s
}

// Mount mounts the snapshot at target with containerd's own options, as a
// container's root is mounted, and returns the function that unmounts it.
func (s Snapshot) Mount(t testing.TB, target string) func() {
	t.Helper()
	if err := os.MkdirAll(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "overlay", "overlay", target, "-o", s.Options).CombinedOutput(); err != nil {
		t.Fatalf("mounting snapshot %s: %v: %s", s.Key, err, out)
	}
	mounted := true
	unmount := func() {
		if mounted {
			mounted = false
			if err := unix.Unmount(target, 0); err != nil {
				t.Errorf("unmounting snapshot %s: %v", s.Key, err)
			}
		}
	}
	t.Cleanup(unmount)
	return unmount
}
