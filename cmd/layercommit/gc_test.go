package main

import (
	"crypto/sha256"
	"encoding/hex"
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

	"github.com/layercommit/layercommit/internal/atomicfile"
	"github.com/layercommit/layercommit/internal/flock"
	"github.com/layercommit/layercommit/internal/oracle"
)

func writeBlob(t *testing.T, dir string, data []byte) string {
	t.Helper()
	sum := sha256.Sum256(data)
	p := filepath.Join(dir, hex.EncodeToString(sum[:]))
	must(t, os.WriteFile(p, data, 0o644))
	return p
}

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

// TestGCLayoutKeepsReachable: in a layout holding an index of indexes
// (written by ggcr, not by us), gc removes only the blob nothing names
// and our temp files; the layout still validates.
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

	want := []string{orphan, temp, topTemp}
	sort.Strings(want)
	if got := gcOut(t, "oci:"+dir); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("gc removed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
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
}

// TestGCRefuses: bad requests and stores gc cannot judge give one line
// and remove nothing.
func TestGCRefuses(t *testing.T) {
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

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"nothing named", nil, "nothing named to clean"},
		{"registry", []string{"docker://example.com/x"}, "want oci:DIR or docker-archive:FILE"},
		{"not a layout", []string{"oci:" + dir}, "not an OCI layout"},
		{"manifest missing", []string{"oci:" + broken}, "not removing any blob"},
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
	if _, err := os.Stat(orphan); err != nil {
		t.Errorf("gc of a broken layout removed a blob: %v", err)
	}
}

// TestGCLiveDaemon: gc refuses a data root a running dockerd uses.
func TestGCLiveDaemon(t *testing.T) {
	d := oracle.NewDocker(t)
	code, _, stderr := cli("gc", "--docker-root", d.Root)
	if code == 0 {
		t.Fatal("gc cleaned a live daemon's root")
	}
	assertOneLineError(t, stderr, "--force")
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

// TestGCStateDir: scratch dirs, temp files, blobs no cache entry names
// and cache entries whose blob is gone are removed; named blobs, their
// entries and unpacked layers stay.
func TestGCStateDir(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"blobs/sha256", "layers/abc/diff", "cache", "tmp/step-1/upper"} {
		must(t, os.MkdirAll(filepath.Join(dir, d), 0o700))
	}
	blobs := filepath.Join(dir, "blobs", "sha256")
	named := writeBlob(t, blobs, []byte("named"))
	orphan := writeBlob(t, blobs, []byte("orphan"))
	temp := filepath.Join(blobs, atomicfile.TempPrefix+"layer-9")
	must(t, os.WriteFile(temp, nil, 0o644))
	entry := func(name, digest string) string {
		p := filepath.Join(dir, "cache", name+".json")
		must(t, os.WriteFile(p, []byte(`{"config":{},"layer":{"digest":"sha256:`+digest+`","size":5}}`), 0o600))
		return p
	}
	keep := entry("a", filepath.Base(named))
	stale := entry("b", strings.Repeat("0", 64))
	noLayer := filepath.Join(dir, "cache", "c.json")
	must(t, os.WriteFile(noLayer, []byte(`{"config":{}}`), 0o600))

	want := []string{filepath.Join(dir, "tmp", "step-1"), temp, orphan, stale}
	sort.Strings(want)
	if got := gcOut(t, "--state-dir", dir); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("gc removed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, p := range []string{named, keep, noLayer, filepath.Join(dir, "layers", "abc", "diff")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("gc removed %s: %v", p, err)
		}
	}
}

// TestOCILockError: a writer that cannot get a layout's lock in time
// fails with one clear line and leaves the layout as it was.
func TestOCILockError(t *testing.T) {
	oracle.Root(t)
	stage1, _ := commitUppers(t)
	layout := filepath.Join(t.TempDir(), "layout")
	lc(t, false, "commit", "-q", "--upper", stage1, "-o", "oci:"+layout+":one")
	before := snapshot(t, layout)
	old := flock.Wait
	flock.Wait = 300 * time.Millisecond
	t.Cleanup(func() { flock.Wait = old })
	// gc's lock: held exclusively on blobs/.
	f, err := os.Open(filepath.Join(layout, "blobs"))
	must(t, err)
	defer f.Close()
	must(t, unix.Flock(int(f.Fd()), unix.LOCK_EX))
	_, stderr := lc(t, true, "commit", "-q", "--upper", stage1, "-o", "oci:"+layout+":two")
	assertOneLineError(t, stderr, "another layercommit is using it")
	if after := snapshot(t, layout); after != before {
		t.Fatalf("the locked-out commit changed the layout:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestGCStateDirMounted: a killed build step can leave its overlay and
// binds mounted under tmp/. gc unmounts them before it removes the step
// dir, so the victim directory bound there keeps its files.
func TestGCStateDirMounted(t *testing.T) {
	oracle.Root(t)
	dir := t.TempDir()
	victim := t.TempDir()
	must(t, os.WriteFile(filepath.Join(victim, "precious"), []byte("keep me"), 0o644))
	merged := filepath.Join(dir, "tmp", "step-2", "merged")
	must(t, os.MkdirAll(merged, 0o755))
	must(t, os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o700))
	if err := unix.Mount(victim, merged, "", unix.MS_BIND, ""); err != nil {
		oracle.Missing(t, "cannot bind mount: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(merged, unix.MNT_DETACH) })
	if got := gcOut(t, "--state-dir", dir); len(got) != 1 || got[0] != filepath.Join(dir, "tmp", "step-2") {
		t.Fatalf("gc removed %v", got)
	}
	if b, err := os.ReadFile(filepath.Join(victim, "precious")); err != nil || string(b) != "keep me" {
		t.Fatalf("gc reached through the mount: %q, %v", b, err)
	}
}
