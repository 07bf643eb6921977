package cleanup_test

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/internal/cleanup"
)

// TestRemoveTemps: only entries with the prefix go; with per-entry locks
// a held entry is kept and reported; a missing dir is nothing to do.
func TestRemoveTemps(t *testing.T) {
	for _, tc := range []struct {
		name        string
		unheld      bool
		wantRemoved []string
		wantKept    []string
	}{
		{"store locked", false, []string{"tmp-file", "tmp-held", "tmp-dir"}, nil},
		{"per-entry locks", true, []string{"tmp-file", "tmp-dir"}, []string{"tmp-held"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range []string{"tmp-file", "tmp-held", "other"} {
				if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.MkdirAll(filepath.Join(dir, "tmp-dir", "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(filepath.Join(dir, "tmp-held"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
				t.Fatal(err)
			}
			var removed, kept []string
			r := cleanup.Report{
				Removed: func(p string) { removed = append(removed, filepath.Base(p)) },
				Kept:    func(p, why string) { kept = append(kept, filepath.Base(p)) },
			}
			if tc.unheld {
				err = r.RemoveUnheldTemps(dir, "tmp-")
			} else {
				err = r.RemoveTemps(dir, "tmp-")
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := sorted(removed), sorted(tc.wantRemoved); got != want {
				t.Errorf("removed %s, want %s", got, want)
			}
			if got, want := sorted(kept), sorted(tc.wantKept); got != want {
				t.Errorf("kept %s, want %s", got, want)
			}
			for _, p := range append(tc.wantKept, "other") {
				if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
					t.Errorf("%s: %v", p, err)
				}
			}
			for _, p := range tc.wantRemoved {
				if _, err := os.Stat(filepath.Join(dir, p)); !os.IsNotExist(err) {
					t.Errorf("%s still there: %v", p, err)
				}
			}
			// Nil callbacks and a missing dir are fine.
			if err := (cleanup.Report{}).RemoveUnheldTemps(filepath.Join(dir, "nope"), "tmp-"); err != nil {
				t.Errorf("missing dir: %v", err)
			}
		})
	}
}

func sorted(s []string) string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return strings.Join(s, ",")
}
