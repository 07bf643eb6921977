package commit

import (
	"path/filepath"
	"testing"

	"github.com/layercommit/layercommit/containersstorage"
	"github.com/layercommit/layercommit/dockerroot"
	"github.com/layercommit/layercommit/export"
	"github.com/layercommit/layercommit/internal/oracle"
)

// TestPodmanPause: with Pause a running podman container's cgroup is
// frozen while its upper dir is read and thawed after; without it, or
// for a stopped container, nothing is frozen.
func TestPodmanPause(t *testing.T) {
	p := oracle.NewPodman(t)
	running := p.Container(t, p.Base)
	stopped := p.Container(t, p.Base)
	p.Run(t, "stop", "-t", "0", stopped)
	for _, tc := range []struct {
		name, id   string
		pause      bool
		wantFrozen bool
	}{
		{"running, paused", running, true, true},
		{"running, --pause=false", running, false, false},
		{"stopped", stopped, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var during []string
			podmanFrozen = func(pid int) {
				s, err := dockerroot.FrozenState(pid)
				if err != nil {
					t.Error(err)
				}
				during = append(during, s)
			}
			defer func() { podmanFrozen = nil }()
			_, err := CommitContainer(t.Context(), ContainerRequest{
				Container: tc.id, To: "oci:" + filepath.Join(t.TempDir(), "l"), Pause: tc.pause,
				Runtime: RuntimePodman, StorageRoot: p.Root, RunRoot: p.RunRoot, StoreCompat: true,
				Output: Output{Options: []export.Option{}},
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := len(during) == 1 && (during[0] == "FROZEN" || during[0] == "frozen 1"); got != tc.wantFrozen {
				t.Fatalf("freezer states seen while reading: %q, want frozen %v", during, tc.wantFrozen)
			}
			s, err := containersstorage.Open(p.Root, p.RunRoot)
			if err != nil {
				t.Fatal(err)
			}
			c, err := s.Libpod(running)
			if err != nil {
				t.Fatal(err)
			}
			if st, _ := dockerroot.FrozenState(c.State.Pid); st == "FROZEN" || st == "frozen 1" {
				t.Errorf("after the commit the container is %q", st)
			}
		})
	}
}
