package statedir

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// unmountUnder detaches every mount at or below p, deepest first, so that
// removing p cannot reach into another file system (a build step's
// overlay, or a bind of a host directory). The mount table is read
// through moby/sys/mountinfo.
func unmountUnder(p string) error {
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(filepath.Clean(p)))
	if err != nil {
		return fmt.Errorf("listing mounts: %w", err)
	}
	points := make([]string, len(ms))
	for i, m := range ms {
		points[i] = m.Mountpoint
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, mp := range points {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmounting %s: %w", mp, err)
		}
	}
	return nil
}
