package oracle_test

import (
	"strings"
	"testing"

	"github.com/layercommit/layercommit/internal/oracle"
)

// TestStartContainerd starts each private containerd the tests use and
// checks that the busybox base is imported and unpacked, and that a
// restart keeps it.
func TestStartContainerd(t *testing.T) {
	for _, v := range []string{"1.6", "2.3"} {
		t.Run(v, func(t *testing.T) {
			c := oracle.StartContainerd(t, v, "")
			ver := c.Run(t, "version")
			if !strings.Contains(ver, "Version:  v"+v) && !strings.Contains(ver, "Version:  "+v) {
				t.Fatalf("ctr version of the %s daemon:\n%s", v, ver)
			}
			if out := c.Run(t, "images", "ls", "-q"); !strings.Contains(out, c.Base) {
				t.Fatalf("images ls has no %s:\n%s", c.Base, out)
			}
			if out := c.Run(t, "snapshots", "ls"); !strings.Contains(out, "Committed") {
				t.Fatalf("the base is not unpacked:\n%s", out)
			}
			c.Stop(t)
			c.Start(t)
			if out := c.Run(t, "images", "ls", "-q"); !strings.Contains(out, c.Base) {
				t.Fatalf("after a restart, images ls has no %s:\n%s", c.Base, out)
			}
		})
	}
}
