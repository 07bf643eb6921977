package export_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/export"
	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/internal/atomicfile"
	"github.com/layercommit/layercommit/internal/cleanup"
	"github.com/layercommit/layercommit/internal/flock"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeBlob(t *testing.T, dir string, data []byte) string {
	t.Helper()
	sum := sha256.Sum256(data)
	p := filepath.Join(dir, hex.EncodeToString(sum[:]))
	must(t, os.WriteFile(p, data, 0o644))
	return p
}

// recorder collects what a gc reports, sorted.
type recorder struct{ removed, kept []string }

func (r *recorder) report() cleanup.Report {
	return cleanup.Report{
		Removed: func(p string) { r.removed = append(r.removed, p) },
		Kept:    func(p, why string) { r.kept = append(r.kept, p+": "+why) },
	}
}

func sorted(s []string) string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return strings.Join(s, "\n")
}

// checkBlobs checks that every blob of the layout holds what its name
// says.
func checkBlobs(t *testing.T, dir string) {
	t.Helper()
	blobs := filepath.Join(dir, "blobs", "sha256")
	ents, err := os.ReadDir(blobs)
	must(t, err)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(blobs, e.Name()))
		must(t, err)
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != e.Name() {
			t.Errorf("blob %s does not hold its digest", e.Name())
		}
	}
}

// TestGCLayoutKeepsReachable: in a layout holding an index of indexes
// (written by ggcr, not by us), GCLayout removes only the blob nothing
// names and our temp files; the layout still validates.
func TestGCLayoutKeepsReachable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	must(t, err)
	inner, err := random.Index(64, 2, 2)
	must(t, err)
	outer := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: inner})
	must(t, p.AppendIndex(outer))
	img, err := random.Image(64, 2)
	must(t, err)
	must(t, p.AppendImage(img))

	blobs := filepath.Join(dir, "blobs", "sha256")
	orphan := writeBlob(t, blobs, []byte("nobody names me"))
	temp := filepath.Join(blobs, atomicfile.TempPrefix+"x-1")
	must(t, os.WriteFile(temp, []byte("half"), 0o644))
	topTemp := filepath.Join(dir, atomicfile.TempPrefix+"index.json-2")
	must(t, os.WriteFile(topTemp, []byte("{"), 0o644))
	notOurs := filepath.Join(blobs, "README")
	must(t, os.WriteFile(notOurs, []byte("not a blob name"), 0o644))

	var r recorder
	must(t, export.GCLayout(dir, r.report()))
	if got, want := sorted(r.removed), sorted([]string{orphan, temp, topTemp}); got != want {
		t.Fatalf("gc removed\n%s\nwant\n%s", got, want)
	}
	if len(r.kept) != 0 {
		t.Errorf("gc kept %q", r.kept)
	}
	if _, err := os.Stat(notOurs); err != nil {
		t.Errorf("gc removed a file that is not named like a blob: %v", err)
	}
	lp, err := layout.FromPath(dir)
	must(t, err)
	ii, err := lp.ImageIndex()
	must(t, err)
	if err := validate.Index(ii); err != nil {
		t.Fatalf("after gc: %v", err)
	}
	must(t, os.Remove(notOurs))
	checkBlobs(t, dir)

	// A second run finds nothing.
	var again recorder
	must(t, export.GCLayout(dir, again.report()))
	if len(again.removed) != 0 {
		t.Errorf("second gc removed %q", again.removed)
	}
}

// TestGCLayoutRefuses: layouts gc cannot judge give one line and remove
// nothing.
func TestGCLayoutRefuses(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken")
	p, err := layout.Write(broken, empty.Index)
	must(t, err)
	img, err := random.Image(64, 1)
	must(t, err)
	must(t, p.AppendImage(img))
	m, err := img.Digest()
	must(t, err)
	must(t, os.Remove(filepath.Join(broken, "blobs", "sha256", m.Hex)))
	orphan := writeBlob(t, filepath.Join(broken, "blobs", "sha256"), []byte("orphan"))

	corrupt := filepath.Join(dir, "corrupt")
	p, err = layout.Write(corrupt, empty.Index)
	must(t, err)
	must(t, p.AppendImage(img))
	must(t, os.WriteFile(filepath.Join(corrupt, "blobs", "sha256", m.Hex), []byte("{}"), 0o644))
	corruptOrphan := writeBlob(t, filepath.Join(corrupt, "blobs", "sha256"), []byte("orphan"))

	for _, tc := range []struct {
		name, dir, want string
		kept            string
	}{
		{"not a layout", dir, "not an OCI layout", ""},
		{"manifest missing", broken, "not removing any blob", orphan},
		{"manifest does not verify", corrupt, "not removing any blob", corruptOrphan},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r recorder
			err := export.GCLayout(tc.dir, r.report())
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("GCLayout: %v, want one line with %q", err, tc.want)
			}
			if len(r.removed) != 0 {
				t.Errorf("removed %q", r.removed)
			}
			if tc.kept != "" {
				if _, err := os.Stat(tc.kept); err != nil {
					t.Errorf("gc of a broken layout removed a blob: %v", err)
				}
			}
		})
	}
}

// TestGCArchiveKeepsInUse: a temp file beside an archive that a live
// writer holds is kept and reported; once released it is removed. The
// archive and files of other archives stay.
func TestGCArchiveKeepsInUse(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "out.tar")
	must(t, os.WriteFile(file, []byte("the archive"), 0o644))
	temp := filepath.Join(dir, atomicfile.TempPrefix+"out.tar-123")
	must(t, os.WriteFile(temp, []byte("being written"), 0o644))
	other := filepath.Join(dir, atomicfile.TempPrefix+"other.tar-1")
	must(t, os.WriteFile(other, nil, 0o644))
	f, err := os.Open(temp)
	must(t, err)
	must(t, unix.Flock(int(f.Fd()), unix.LOCK_SH))

	var r recorder
	must(t, export.GCArchive(file, r.report()))
	if len(r.removed) != 0 || len(r.kept) != 1 || !strings.HasPrefix(r.kept[0], temp+": ") {
		t.Fatalf("gc of a held temp: removed %q, kept %q", r.removed, r.kept)
	}
	f.Close()
	r = recorder{}
	must(t, export.GCArchive(file, r.report()))
	if sorted(r.removed) != temp || len(r.kept) != 0 {
		t.Fatalf("gc after release: removed %q, kept %q", r.removed, r.kept)
	}
	for _, p := range []string{file, other} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("gc removed %s: %v", p, err)
		}
	}
}

// TestGCArchiveFindsWriterTemps: what a docker-archive destination leaves
// beside its file when its writer dies before Close is what GCArchive
// removes.
func TestGCArchiveFindsWriterTemps(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "out.tar")
	d, err := export.NewDestination(context.Background(), "docker-archive:"+file)
	must(t, err)
	// A live writer's blob dir is held.
	var r recorder
	must(t, export.GCArchive(file, r.report()))
	if len(r.removed) != 0 || len(r.kept) != 1 || !strings.HasPrefix(r.kept[0], d.BlobDir()+": ") {
		t.Fatalf("gc while writing: removed %q, kept %q", r.removed, r.kept)
	}
	// A dead writer (lock released, dir left) is cleaned.
	leftover := d.BlobDir() + ".copy"
	must(t, os.Rename(d.BlobDir(), leftover))
	must(t, d.Close())
	r = recorder{}
	must(t, export.GCArchive(file, r.report()))
	if sorted(r.removed) != leftover {
		t.Fatalf("gc after the writer: removed %q, want %s", r.removed, leftover)
	}
}

// snapshot is fixtures.Snapshot, for "nothing changed" comparisons.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	return fixtures.Snapshot(dir)
}

// TestOCILockError: a writer that cannot get a layout's use lock in time
// (gc holds it exclusive) fails with one clear line naming ErrLocked and
// leaves the layout as it was.
func TestOCILockError(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "layout")
	img, err := random.Image(256, 2)
	must(t, err)
	d, err := export.NewDestination(ctx, "oci:"+dir+":one")
	must(t, err)
	must(t, d.Write(ctx, img))
	must(t, d.Close())
	back, err := export.Open(ctx, "oci:"+dir+":one")
	must(t, err)
	if err := validate.Image(back); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)

	old := flock.Wait
	flock.Wait = 300 * time.Millisecond
	t.Cleanup(func() { flock.Wait = old })
	// gc's lock: held exclusively on blobs/.
	f, err := os.Open(filepath.Join(dir, "blobs"))
	must(t, err)
	defer f.Close()
	must(t, unix.Flock(int(f.Fd()), unix.LOCK_EX))
	_, err = export.NewDestination(ctx, "oci:"+dir+":two")
	if !errors.Is(err, flock.ErrLocked) || !strings.Contains(err.Error(), "another layercommit is using it") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("NewDestination on a locked layout: %v", err)
	}
	if after := snapshot(t, dir); after != before {
		t.Fatalf("the locked-out writer changed the layout:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
