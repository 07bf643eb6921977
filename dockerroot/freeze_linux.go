package dockerroot

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Freeze freezes the cgroup of the process pid (a container's init) with
// the cgroup freezer, v1 or v2, and returns a function that thaws it.
// It is what docker commit's default pause does. id is the container's
// full ID: the pid's cgroup path must name it (Docker's /docker/<id> and
// docker-<id>.scope, podman's libpod-<id>), since the pid comes from a
// state file that may be stale (Docker 29 leaves "Running" and the pid of
// an exited container on disk for a while) and a reused pid must never
// freeze another process's cgroup. A pid that no longer exists, or now
// belongs to another cgroup, has nothing of the container's to freeze:
// its upper dir no longer changes, so Freeze returns a thaw that does
// nothing.
func Freeze(pid int, id string) (thaw func() error, err error) {
	nothing := func() error { return nil }
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if errors.Is(err, fs.ErrNotExist) {
		return nothing, nil
	}
	if err != nil {
		return nil, fmt.Errorf("finding the cgroup of pid %d: %w", pid, err)
	}
	defer f.Close()
	var v1Path, v2Path string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2Path = parts[2]
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "freezer" {
				v1Path = parts[2]
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the cgroup of pid %d: %w", pid, err)
	}
	switch {
	case v1Path != "":
		if !strings.Contains(v1Path, id) {
			return nothing, nil
		}
		dir := filepath.Join("/sys/fs/cgroup/freezer", filepath.Clean("/"+v1Path))
		return freeze(filepath.Join(dir, "freezer.state"), "FROZEN", "THAWED", filepath.Join(dir, "freezer.state"), "FROZEN")
	case v2Path != "":
		if !strings.Contains(v2Path, id) {
			return nothing, nil
		}
		dir := filepath.Join("/sys/fs/cgroup", filepath.Clean("/"+v2Path))
		return freeze(filepath.Join(dir, "cgroup.freeze"), "1", "0", filepath.Join(dir, "cgroup.events"), "frozen 1")
	}
	return nil, fmt.Errorf("pid %d has no freezer cgroup", pid)
}

func freeze(ctl, on, off, state, frozen string) (func() error, error) {
	thaw := func() error {
		if err := os.WriteFile(ctl, []byte(off), 0); err != nil {
			return fmt.Errorf("thawing %s: %w", filepath.Dir(ctl), err)
		}
		return nil
	}
	if err := os.WriteFile(ctl, []byte(on), 0); err != nil {
		return nil, fmt.Errorf("freezing %s: %w", filepath.Dir(ctl), err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(state)
		if err == nil && strings.Contains(string(b), frozen) {
			return thaw, nil
		}
		if time.Now().After(deadline) {
			thaw()
			return nil, fmt.Errorf("freezing %s: still not frozen after 10s", filepath.Dir(ctl))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FrozenState reads the freezer state of pid's cgroup ("FROZEN",
// "THAWED", "FREEZING" on v1; "frozen 0/1" on v2), for tests and display.
func FrozenState(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && strings.Contains(","+parts[1]+",", ",freezer,") {
			s, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/freezer", filepath.Clean("/"+parts[2]), "freezer.state"))
			return strings.TrimSpace(string(s)), err
		}
		if len(parts) == 3 && parts[0] == "0" && parts[1] == "" {
			s, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", filepath.Clean("/"+parts[2]), "cgroup.events"))
			for _, l := range strings.Split(string(s), "\n") {
				if strings.HasPrefix(l, "frozen ") {
					return l, err
				}
			}
			return "", err
		}
	}
	return "", fmt.Errorf("pid %d has no freezer cgroup", pid)
}
