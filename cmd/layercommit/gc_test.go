package main

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/internal/atomicfile"
)

func gcOut(t *testing.T, args ...string) []string {
	t.Helper()
	code, out, errs := cli(append([]string{"gc"}, args...)...)
	if code != 0 {
		t.Fatalf("gc %v: exit %d: %s", args, code, errs)
	}
	lines := strings.Fields(out)
	sort.Strings(lines)
	return lines
}

// TestGCRefuses: bad requests and stores gc cannot judge give one line
// and a non-zero exit. (What each store's gc refuses is tested beside it:
// export, dockerroot, statedir.)
func TestGCRefuses(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"nothing named", nil, "nothing named to clean"},
		{"registry", []string{"docker://example.com/x"}, "want oci:DIR or docker-archive:FILE"},
		{"not a layout", []string{"oci:" + dir}, "not an OCI layout"},
		{"not a state dir", []string{"--state-dir", dir}, "not a layercommit state dir"},
		{"no data root", []string{"--docker-root", filepath.Join(dir, "nope")}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := cli(append([]string{"gc"}, tc.args...)...)
			if code == 0 {
				t.Fatalf("gc %v succeeded: %s", tc.args, out)
			}
			assertOneLineError(t, stderr, tc.want)
		})
	}
}

// TestGCKeepsInUse: a temp file a live writer holds is kept and named on
// stderr; once released it is removed.
func TestGCKeepsInUse(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "out.tar")
	temp := filepath.Join(dir, atomicfile.TempPrefix+"out.tar-123")
	must(t, os.WriteFile(temp, []byte("being written"), 0o644))
	f, err := os.Open(temp)
	must(t, err)
	must(t, unix.Flock(int(f.Fd()), unix.LOCK_SH))
	code, out, stderr := cli("gc", "docker-archive:"+file)
	if code != 0 || out != "" || !strings.Contains(stderr, "kept "+temp) {
		t.Fatalf("gc of a held temp: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	f.Close()
	if got := gcOut(t, "docker-archive:"+file); len(got) != 1 || got[0] != temp {
		t.Fatalf("gc after release removed %v", got)
	}
}
