package dockerroot_test

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/dockerroot"
	"github.com/layercommit/layercommit/internal/atomicfile"
	"github.com/layercommit/layercommit/internal/cleanup"
	"github.com/layercommit/layercommit/internal/oracle"
)

// gcRecord runs GC on dir and returns what it removed and kept, sorted.
func gcRecord(t *testing.T, dir string, force bool) (removed, kept []string, err error) {
	t.Helper()
	err = dockerroot.GC(dir, force, cleanup.Report{
		Removed: func(p string) { removed = append(removed, p) },
		Kept:    func(p, why string) { kept = append(kept, p) },
	})
	sort.Strings(removed)
	sort.Strings(kept)
	return removed, kept, err
}

// TestGCLeftovers: in a data root (no daemon on it) GC removes what
// interrupted writes left (a temp dir no writer holds, our temp dirs in
// overlay2/, a pending layer dir no layerdb entry names with its l/ link,
// the marker of a pending dir layerdb does name, our temp files beside a
// layer's diff/ and in the image store, dockerd's write sets) and keeps
// what a live writer holds, complete layers, other links and anything
// inside a diff/.
func TestGCLeftovers(t *testing.T) {
	root := t.TempDir()
	p := func(elem ...string) string { return filepath.Join(append([]string{root}, elem...)...) }
	mkdir := func(elem ...string) string {
		d := p(elem...)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		return d
	}
	write := func(data string, elem ...string) string {
		f := p(elem...)
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	symlink := func(target string, elem ...string) string {
		l := p(elem...)
		if err := os.Symlink(target, l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	mkdir("image", "overlay2", "imagedb", "content", "sha256")
	mkdir("overlay2", "l")

	held := mkdir("tmp", dockerroot.TempPrefix+"held")
	free := mkdir("tmp", dockerroot.TempPrefix+"free")
	notOursTmp := mkdir("tmp", "docker-something")
	ovTemp := mkdir("overlay2", dockerroot.TempPrefix+"abc")

	// A pending dir no layerdb entry names: removed with its link.
	orphan := mkdir("overlay2", "orphan", "diff")
	orphan = filepath.Dir(orphan)
	write("", "overlay2", "orphan", dockerroot.PendingMarker)
	write("ORPHANLINK\n", "overlay2", "orphan", "link")
	orphanLink := symlink("../orphan/diff", "overlay2", "l", "ORPHANLINK")
	// A pending dir layerdb names: only its marker goes.
	mkdir("overlay2", "named", "diff")
	namedMarker := write("", "overlay2", "named", dockerroot.PendingMarker)
	write("named\n", "image", "overlay2", "layerdb", "sha256", strings.Repeat("a", 64), "cache-id")
	// A complete layer, ours or dockerd's: kept, but our temp files
	// beside diff/ go, and nothing inside diff/ is touched.
	mkdir("overlay2", "done", "diff")
	write("DONELINK\n", "overlay2", "done", "link")
	doneLink := symlink("../done/diff", "overlay2", "l", "DONELINK")
	doneTemp := write("half", "overlay2", "done", atomicfile.TempPrefix+"lower-1")
	inDiff := write("a file of the image", "overlay2", "done", "diff", atomicfile.TempPrefix+"x")
	// A container's layer named by mount-id: a pending marker there is
	// only dropped.
	mkdir("overlay2", "mnt", "diff")
	mntMarker := write("", "overlay2", "mnt", dockerroot.PendingMarker)
	write("mnt", "image", "overlay2", "layerdb", "mounts", strings.Repeat("b", 64), "mount-id")
	// Temp files in the image store, and a write set.
	cfgTemp := write("{", "image", "overlay2", "imagedb", "content", "sha256", atomicfile.TempPrefix+"cfg-1")
	reposTemp := write("{", "image", "overlay2", atomicfile.TempPrefix+"repositories.json-2")
	writeSet := mkdir("image", "overlay2", "layerdb", "tmp", "write-set-123")

	f, err := os.Open(held)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
		t.Fatal(err)
	}

	removed, kept, err := gcRecord(t, root, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{free, ovTemp, orphan, orphanLink, namedMarker, doneTemp, mntMarker, cfgTemp, reposTemp, writeSet}
	sort.Strings(want)
	if strings.Join(removed, "\n") != strings.Join(want, "\n") {
		t.Fatalf("gc removed\n%s\nwant\n%s", strings.Join(removed, "\n"), strings.Join(want, "\n"))
	}
	if len(kept) != 1 || kept[0] != held {
		t.Errorf("gc kept %q, want the held temp dir %s", kept, held)
	}
	for _, q := range []string{held, notOursTmp, p("overlay2", "named", "diff"), p("overlay2", "mnt", "diff"), doneLink, inDiff} {
		if _, err := os.Lstat(q); err != nil {
			t.Errorf("gc removed %s: %v", q, err)
		}
	}
	// Once its writer is gone, the held dir goes too; then nothing is left.
	f.Close()
	if removed, _, err = gcRecord(t, root, false); err != nil || len(removed) != 1 || removed[0] != held {
		t.Fatalf("gc after the writer: removed %q, %v", removed, err)
	}
	if removed, kept, err = gcRecord(t, root, false); err != nil || len(removed)+len(kept) != 0 {
		t.Fatalf("third gc: removed %q, kept %q, %v", removed, kept, err)
	}
}

// TestGCRefuses: GC refuses a data root a running dockerd uses (pointing
// at --force) and a dir that is no data root, in one line, removing
// nothing.
func TestGCRefuses(t *testing.T) {
	d := oracle.NewDocker(t)
	for _, tc := range []struct{ name, dir, want string }{
		{"live daemon", d.Root, "--force"},
		{"no data root", filepath.Join(t.TempDir(), "nope"), "no such file"},
		{"not a data root", t.TempDir(), "not a Docker data root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			removed, kept, err := gcRecord(t, tc.dir, false)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("GC(%s): %v, want one line with %q", tc.dir, err, tc.want)
			}
			if len(removed)+len(kept) != 0 {
				t.Errorf("GC of a refused root removed %q, kept %q", removed, kept)
			}
		})
	}
}
