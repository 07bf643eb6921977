package userns

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// IDMap is one line of a uid_map or gid_map: Size ids from HostID (in
// the parent namespace) appear as ContainerID.. in the new one.
type IDMap struct {
	ContainerID, HostID, Size int
}

// ErrNoSubIDs is wrapped when the user has no subordinate range.
var ErrNoSubIDs = errors.New("no subordinate ids")

// subIDRanges reads the ranges of a subuid or subgid file (name:start:count
// per line, name a user name or a numeric id) that belong to the user
// with the given name or numeric id, in file order. A missing file has
// none.
func subIDRanges(file, name string, id int) ([]IDMap, error) {
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	defer f.Close()
	var out []IDMap
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, ":")
		if len(parts) != 3 {
			return nil, fmt.Errorf("%s:%d: want NAME:START:COUNT, have %q", file, n, line)
		}
		if parts[0] != name && parts[0] != strconv.Itoa(id) {
			continue
		}
		start, err1 := strconv.ParseUint(parts[1], 10, 32)
		count, err2 := strconv.ParseUint(parts[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 || start+count > 1<<32-1 {
			return nil, fmt.Errorf("%s:%d: bad range %q", file, n, line)
		}
		out = append(out, IDMap{HostID: int(start), Size: int(count)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	return out, nil
}

// mapping is rootless podman's: 0 is the caller's own id, then the
// subordinate ranges one after another from 1.
func mapping(own int, ranges []IDMap) []IDMap {
	m := []IDMap{{ContainerID: 0, HostID: own, Size: 1}}
	next := 1
	for _, r := range ranges {
		m = append(m, IDMap{ContainerID: next, HostID: r.HostID, Size: r.Size})
		next += r.Size
	}
	return m
}

// helperArgs are the arguments of newuidmap or newgidmap for pid.
func helperArgs(pid int, m []IDMap) []string {
	args := []string{strconv.Itoa(pid)}
	for _, e := range m {
		args = append(args, strconv.Itoa(e.ContainerID), strconv.Itoa(e.HostID), strconv.Itoa(e.Size))
	}
	return args
}
