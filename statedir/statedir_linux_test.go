package statedir_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/internal/atomicfile"
	"github.com/layercommit/layercommit/internal/cleanup"
	"github.com/layercommit/layercommit/internal/oracle"
	"github.com/layercommit/layercommit/internal/verify"
	"github.com/layercommit/layercommit/layer"
	"github.com/layercommit/layercommit/statedir"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// gc runs statedir.GC and returns what it removed and kept, sorted.
func gc(t *testing.T, dir string, force bool) (removed, kept []string, err error) {
	t.Helper()
	err = statedir.GC(dir, force, cleanup.Report{
		Removed: func(p string) { removed = append(removed, p) },
		Kept:    func(p, why string) { kept = append(kept, p) },
	})
	sort.Strings(removed)
	sort.Strings(kept)
	return removed, kept, err
}

// writeLayer writes a small layer through the state dir, as a build step
// does, and returns it.
func writeLayer(t *testing.T, d *statedir.Dir, name string) *layer.Layer {
	t.Helper()
	upper := filepath.Join(t.TempDir(), "upper")
	must(t, fixtures.Apply(upper,
		fixtures.CreateDir("etc", 0o755),
		fixtures.CreateFile("etc/"+name, []byte("made by "+name+"\n"), 0o644)))
	l, err := d.WriteLayer(context.Background(), upper)
	must(t, err)
	return l
}

// TestCache: a step's layer written into the state dir and its entry
// stored come back from Lookup as a layer that validates; an entry whose
// blob is gone, truncated or never stored is a miss.
func TestCache(t *testing.T) {
	oracle.Root(t)
	d, err := statedir.Open(t.TempDir())
	must(t, err)
	defer d.Close()
	l := writeLayer(t, d, "a")
	desc := l.Descriptor()
	must(t, d.Store("with-layer", &statedir.CacheEntry{Config: json.RawMessage(`{"os":"linux"}`), Layer: &desc}))
	must(t, d.Store("meta", &statedir.CacheEntry{Config: json.RawMessage(`{}`)}))

	e, ok := d.Lookup("with-layer")
	if !ok || e.Layer == nil || *e.Layer != desc || string(e.Config) != `{"os":"linux"}` {
		t.Fatalf("Lookup: %+v, %v", e, ok)
	}
	back, ok := d.BlobLayer(*e.Layer)
	if !ok {
		t.Fatal("BlobLayer of a stored blob failed")
	}
	if err := validate.Layer(back); err != nil {
		t.Fatalf("validate.Layer: %v", err)
	}
	if e, ok := d.Lookup("meta"); !ok || e.Layer != nil {
		t.Fatalf("Lookup of a metadata step: %+v, %v", e, ok)
	}
	if _, ok := d.Lookup("never"); ok {
		t.Error("Lookup of a missing key hit")
	}
	blob := filepath.Join(d.BlobDir(), desc.Digest.Hex)
	must(t, os.Truncate(blob, desc.Size-1))
	if _, ok := d.Lookup("with-layer"); ok {
		t.Error("Lookup hit with a truncated blob")
	}
	must(t, os.Remove(blob))
	if _, ok := d.Lookup("with-layer"); ok {
		t.Error("Lookup hit with its blob gone")
	}
}

// lyingLayer claims another diffID than its stream has.
type lyingLayer struct {
	v1.Layer
	diffID v1.Hash
}

func (l lyingLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }

// TestUnpackLayer: a layer is unpacked once into LayerDir of its diffID;
// a stream that does not hash to its diffID fails with
// verify.ErrDigestMismatch and publishes nothing; Adopt of a dir whose
// layer is already there drops the dir.
func TestUnpackLayer(t *testing.T) {
	oracle.Root(t)
	ctx := context.Background()
	d, err := statedir.Open(t.TempDir())
	must(t, err)
	defer d.Close()
	l := writeLayer(t, d, "a")
	diffID, _ := l.DiffID()
	dir, err := d.UnpackLayer(ctx, l)
	must(t, err)
	if dir != d.LayerDir(diffID) {
		t.Fatalf("unpacked into %s, want %s", dir, d.LayerDir(diffID))
	}
	if b, err := os.ReadFile(filepath.Join(dir, "etc", "a")); err != nil || string(b) != "made by a\n" {
		t.Fatalf("unpacked etc/a: %q, %v", b, err)
	}
	// Once: a second call returns the dir as it is.
	must(t, os.WriteFile(filepath.Join(dir, "marker"), nil, 0o644))
	if again, err := d.UnpackLayer(ctx, l); err != nil || again != dir {
		t.Fatalf("second UnpackLayer: %s, %v", again, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "marker")); err != nil {
		t.Fatal("second UnpackLayer unpacked again")
	}

	other, _ := writeLayer(t, d, "b").DiffID()
	_, err = d.UnpackLayer(ctx, lyingLayer{Layer: writeLayer(t, d, "c"), diffID: other})
	if !errors.Is(err, verify.ErrDigestMismatch) {
		t.Fatalf("UnpackLayer of a lying layer: %v, want ErrDigestMismatch", err)
	}
	if _, err := os.Stat(d.LayerDir(other)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a layer that did not verify was published: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(d.Path(), "tmp")); len(ents) != 0 {
		t.Errorf("UnpackLayer left scratch dirs: %v", ents)
	}

	dup, err := d.TempDir("step-")
	must(t, err)
	must(t, d.Adopt(dup, diffID))
	if _, err := os.Stat(dup); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Adopt of a layer already kept left the dir: %v", err)
	}
}

// TestInitDir: the init layer is made once, through a scratch dir that a
// failed attempt does not leave behind.
func TestInitDir(t *testing.T) {
	d, err := statedir.Open(t.TempDir())
	must(t, err)
	defer d.Close()
	if _, err := d.InitDir(func(string) error { return errors.New("boom") }); err == nil || err.Error() != "boom" {
		t.Fatalf("InitDir with a failing maker: %v", err)
	}
	calls := 0
	build := func(dir string) error {
		calls++
		return os.WriteFile(filepath.Join(dir, ".dockerenv"), nil, 0o644)
	}
	first, err := d.InitDir(build)
	must(t, err)
	second, err := d.InitDir(build)
	must(t, err)
	if first != second || calls != 1 {
		t.Fatalf("InitDir: %s then %s, maker called %d times", first, second, calls)
	}
	if _, err := os.Stat(filepath.Join(first, ".dockerenv")); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(d.Path(), "tmp")); len(ents) != 0 {
		t.Errorf("InitDir left scratch dirs: %v", ents)
	}
}

// TestGC: scratch dirs, temp files, blobs no cache entry names and cache
// entries whose blob is gone are removed; named blobs, their entries,
// entries without a layer and unpacked layers stay. The entries are
// written by Store, as builds write them.
func TestGC(t *testing.T) {
	oracle.Root(t)
	dir := t.TempDir()
	d, err := statedir.Open(dir)
	must(t, err)
	named := writeLayer(t, d, "named")
	orphan := writeLayer(t, d, "orphan")
	gone := writeLayer(t, d, "gone")
	for key, l := range map[string]*layer.Layer{"a": named, "b": gone} {
		desc := l.Descriptor()
		must(t, d.Store(key, &statedir.CacheEntry{Config: json.RawMessage(`{}`), Layer: &desc}))
	}
	must(t, d.Store("c", &statedir.CacheEntry{Config: json.RawMessage(`{}`)}))
	namedID, _ := named.DiffID()
	_, err = d.UnpackLayer(context.Background(), named)
	must(t, err)
	// An unpacked layer of an earlier boot is a leftover.
	staleID, _ := orphan.DiffID()
	_, err = d.UnpackLayer(context.Background(), orphan)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "layers", staleID.Hex+".boot"), []byte("an-earlier-boot"), 0o600))
	step, err := d.TempDir("step-")
	must(t, err)
	must(t, os.MkdirAll(filepath.Join(step, "upper", "x"), 0o755))
	d.Close()

	blob := func(l *layer.Layer) string {
		dg, _ := l.Digest()
		return filepath.Join(d.BlobDir(), dg.Hex)
	}
	must(t, os.Remove(blob(gone)))
	temp := filepath.Join(d.BlobDir(), atomicfile.TempPrefix+"layer-9")
	must(t, os.WriteFile(temp, nil, 0o644))
	topTemp := filepath.Join(dir, atomicfile.TempPrefix+"x-1")
	must(t, os.WriteFile(topTemp, nil, 0o644))
	notOurs := filepath.Join(d.BlobDir(), "README")
	must(t, os.WriteFile(notOurs, nil, 0o644))

	removed, kept, err := gc(t, dir, false)
	must(t, err)
	want := []string{step, temp, topTemp, blob(orphan), filepath.Join(dir, "cache", "b.json"), d.LayerDir(staleID)}
	sort.Strings(want)
	if strings.Join(removed, "\n") != strings.Join(want, "\n") {
		t.Fatalf("gc removed\n%s\nwant\n%s", strings.Join(removed, "\n"), strings.Join(want, "\n"))
	}
	if len(kept) != 0 {
		t.Errorf("gc kept %q", kept)
	}
	for _, p := range []string{blob(named), filepath.Join(dir, "cache", "a.json"), filepath.Join(dir, "cache", "c.json"), d.LayerDir(namedID), notOurs} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("gc removed %s: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "layers", staleID.Hex+".boot")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("gc left the stale layer's mark: %v", err)
	}
	// What gc kept is still a cache hit.
	d, err = statedir.Open(dir)
	must(t, err)
	defer d.Close()
	if _, ok := d.Lookup("a"); !ok {
		t.Error("the entry gc kept is not a hit")
	}
}

// TestGCRefuses: a dir that is no state dir, and a cache entry gc cannot
// read (then what is named is unknown), give one line and remove no blob.
func TestGCRefuses(t *testing.T) {
	dir := t.TempDir()
	d, err := statedir.Open(dir)
	must(t, err)
	d.Close()
	must(t, os.WriteFile(filepath.Join(dir, "cache", "bad.json"), []byte("{"), 0o600))
	orphan := filepath.Join(d.BlobDir(), strings.Repeat("0", 64))
	must(t, os.WriteFile(orphan, nil, 0o644))
	for _, tc := range []struct{ name, dir, want string }{
		{"not a state dir", t.TempDir(), "not a layercommit state dir"},
		{"unreadable entry", dir, "not removing blobs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := gc(t, tc.dir, false)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("GC: %v, want one line with %q", err, tc.want)
			}
		})
	}
	if _, err := os.Stat(orphan); err != nil {
		t.Errorf("gc removed a blob while an entry was unreadable: %v", err)
	}
}

// TestGCLockedByBuild: a build holds the state dir shared from Open to
// Close (builds share it); gc refuses with one line while any holder
// lives (a build through Open, or any process holding the flock shared),
// cleans with force, and cleans once the holders are gone.
func TestGCLockedByBuild(t *testing.T) {
	for _, tc := range []struct {
		name string
		hold func(t *testing.T, dir string) (release func())
	}{
		{"Open", func(t *testing.T, dir string) func() {
			a, err := statedir.Open(dir)
			must(t, err)
			// A second build shares the lock.
			b, err := statedir.Open(dir)
			must(t, err)
			return func() { a.Close(); b.Close() }
		}},
		{"shared flock", func(t *testing.T, dir string) func() {
			f, err := os.Open(dir)
			must(t, err)
			must(t, unix.Flock(int(f.Fd()), unix.LOCK_SH))
			return func() { f.Close() }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, sub := range []string{"blobs/sha256", "tmp/step-1", "tmp/step-2"} {
				must(t, os.MkdirAll(filepath.Join(dir, sub), 0o700))
			}
			release := tc.hold(t, dir)
			removed, _, err := gc(t, dir, false)
			if err == nil || !strings.Contains(err.Error(), "is using") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("gc of a held state dir: %v", err)
			}
			if len(removed) != 0 {
				t.Fatalf("gc of a held state dir removed %q", removed)
			}
			if _, err := os.Stat(filepath.Join(dir, "tmp", "step-1")); err != nil {
				t.Fatalf("gc removed a held build's scratch dir: %v", err)
			}
			removed, _, err = gc(t, dir, true)
			must(t, err)
			if want := filepath.Join(dir, "tmp", "step-1") + " " + filepath.Join(dir, "tmp", "step-2"); strings.Join(removed, " ") != want {
				t.Fatalf("gc --force removed %q, want %s", removed, want)
			}
			must(t, os.MkdirAll(filepath.Join(dir, "tmp", "step-3"), 0o700))
			release()
			if removed, _, err := gc(t, dir, false); err != nil || len(removed) != 1 || removed[0] != filepath.Join(dir, "tmp", "step-3") {
				t.Fatalf("gc after the build: %q, %v", removed, err)
			}
		})
	}
}

// TestGCMounted: a killed build step can leave its overlay and binds
// mounted under tmp/. gc unmounts them before it removes the step dir, so
// the victim directory bound there keeps its files.
func TestGCMounted(t *testing.T) {
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
	if removed, _, err := gc(t, dir, false); err != nil || len(removed) != 1 || removed[0] != filepath.Join(dir, "tmp", "step-2") {
		t.Fatalf("gc removed %v, %v", removed, err)
	}
	if b, err := os.ReadFile(filepath.Join(victim, "precious")); err != nil || string(b) != "keep me" {
		t.Fatalf("gc reached through the mount: %q, %v", b, err)
	}
}

// unpackedIn unpacks a layer into the state dir at path as the boot
// boot would (then closes it) and returns the layer, its diffID and dir.
func unpackedIn(t *testing.T, path, boot string) (*layer.Layer, v1.Hash, string) {
	t.Helper()
	statedir.SetBootID(t.Cleanup, boot)
	d, err := statedir.Open(path)
	must(t, err)
	defer d.Close()
	l := writeLayer(t, d, "a")
	diffID, _ := l.DiffID()
	dir, err := d.UnpackLayer(context.Background(), l)
	must(t, err)
	return l, diffID, dir
}

// TestLayerBootMarks: an unpacked or adopted layer dir is trusted in the
// boot that published it only; after a reboot (another boot id) it is
// removed and unpacked again from its blob, as is one with no mark or a
// mark a crash cut short; without a boot id the dir is synced and
// trusted in any boot.
func TestLayerBootMarks(t *testing.T) {
	oracle.Root(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		publish string             // boot id when the dir is published
		mark    func(string) error // what then happens to its mark (nil: nothing)
		later   string             // boot id when it is used again
		trusted bool
	}{
		{"the same boot", "boot-a", nil, "boot-a", true},
		{"after a reboot", "boot-a", nil, "boot-b", false},
		{"no mark", "boot-a", os.Remove, "boot-a", false},
		{"a mark cut short", "boot-a", func(p string) error { return os.Truncate(p, 3) }, "boot-a", false},
		{"no boot id: synced", "", nil, "boot-c", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := t.TempDir()
			l, diffID, dir := unpackedIn(t, path, tc.publish)
			if tc.mark != nil {
				must(t, tc.mark(filepath.Join(path, "layers", diffID.Hex+".boot")))
			}
			must(t, os.WriteFile(filepath.Join(dir, "was-here"), nil, 0o644))

			statedir.SetBootID(t.Cleanup, tc.later)
			d, err := statedir.Open(path)
			must(t, err)
			defer d.Close()
			if got := d.HasLayer(diffID); got != tc.trusted {
				t.Fatalf("HasLayer = %t, want %t", got, tc.trusted)
			}
			again, err := d.UnpackLayer(ctx, l)
			must(t, err)
			_, serr := os.Stat(filepath.Join(again, "was-here"))
			if (serr == nil) != tc.trusted {
				t.Errorf("the dir published first is kept: %v, want %t", serr, tc.trusted)
			}
			if b, err := os.ReadFile(filepath.Join(again, "etc", "a")); err != nil || string(b) != "made by a\n" {
				t.Errorf("etc/a: %q, %v", b, err)
			}
			if !d.HasLayer(diffID) {
				t.Error("HasLayer is false after UnpackLayer")
			}
			// Adopt of a dir of the same layer keeps the trusted one.
			dup, err := d.TempDir("step-")
			must(t, err)
			must(t, d.Adopt(dup, diffID))
			if _, err := os.Stat(filepath.Join(again, "etc", "a")); err != nil {
				t.Errorf("Adopt replaced a trusted dir: %v", err)
			}
			if ents, _ := os.ReadDir(filepath.Join(path, "tmp")); len(ents) != 0 {
				t.Errorf("left in tmp: %v", ents)
			}
		})
	}
	// Adopt over a dir of an earlier boot replaces it.
	path := t.TempDir()
	_, diffID, _ := unpackedIn(t, path, "boot-a")
	statedir.SetBootID(t.Cleanup, "boot-b")
	d, err := statedir.Open(path)
	must(t, err)
	defer d.Close()
	step, err := d.TempDir("step-")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(step, "new"), nil, 0o644))
	must(t, d.Adopt(step, diffID))
	if _, err := os.Stat(filepath.Join(d.LayerDir(diffID), "new")); err != nil || !d.HasLayer(diffID) {
		t.Errorf("Adopt kept the dir of an earlier boot: %v, HasLayer %t", err, d.HasLayer(diffID))
	}
	if b, err := os.ReadFile(filepath.Join(path, "layers", diffID.Hex+".boot")); err != nil || string(b) != "boot-b" {
		t.Errorf("mark %q, %v; want boot-b", b, err)
	}
}
