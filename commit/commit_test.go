package commit_test

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/layercommit/layercommit/commit"
	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/export"
	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/image"
	"github.com/layercommit/layercommit/internal/atomicfile"
	"github.com/layercommit/layercommit/internal/oracle"
	"github.com/layercommit/layercommit/layer"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// readBack opens ref through export, runs ggcr's validate.Image on it
// and checks that its ID is id.
func readBack(t *testing.T, ref string, id v1.Hash) v1.Image {
	t.Helper()
	img, err := export.Open(context.Background(), ref)
	if err != nil {
		t.Fatalf("reading %s back: %v", ref, err)
	}
	// validate.Image reads layers as gzip; zstd and uncompressed layers
	// get its manifest and config checks and our own stream check.
	var opts []validate.Option
	ls, err := img.Layers()
	must(t, err)
	for _, l := range ls {
		mt, err := l.MediaType()
		must(t, err)
		if c, err := layer.CompressionOf(mt); err != nil || c != layer.Gzip {
			opts = []validate.Option{validate.Fast}
		}
	}
	if err := validate.Image(img, opts...); err != nil {
		t.Fatalf("validate.Image(%s): %v", ref, err)
	}
	if opts != nil {
		for _, l := range ls {
			checkUncompressed(t, l)
		}
	}
	if got, err := img.ConfigName(); err != nil || got != id {
		t.Fatalf("%s has ID %s (%v), Commit returned %s", ref, got, err, id)
	}
	return img
}

// checkUncompressed reads l's tar and checks it against its diffID.
func checkUncompressed(t *testing.T, l v1.Layer) {
	t.Helper()
	want, err := l.DiffID()
	must(t, err)
	rc, err := l.Uncompressed()
	must(t, err)
	defer rc.Close()
	got, _, err := v1.SHA256(rc)
	must(t, err)
	if got != want {
		t.Errorf("layer stream has %s, diffID %s", got, want)
	}
}

func layerCount(t *testing.T, img v1.Image) int {
	t.Helper()
	ls, err := img.Layers()
	must(t, err)
	return len(ls)
}

func upperDir(t *testing.T, as ...fixtures.Applier) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "upper")
	must(t, fixtures.Apply(dir, as...))
	return dir
}

// TestCommit commits upper dirs onto scratch and onto a base into each
// file destination and reads every result back: it validates, has the
// returned ID, the media types the destination and compressor call for,
// and one layer more than its base (none for an empty upper dir).
func TestCommit(t *testing.T) {
	oracle.Root(t)
	ctx := context.Background()
	dir := t.TempDir()
	base, err := random.Image(512, 2)
	must(t, err)
	d, err := export.NewDestination(ctx, "oci:"+filepath.Join(dir, "base")+":b")
	must(t, err)
	must(t, d.Write(ctx, base))
	must(t, d.Close())
	baseRef := "oci:" + filepath.Join(dir, "base") + ":b"

	upper := upperDir(t,
		fixtures.CreateDir("app", 0o755),
		fixtures.CreateFile("app/hello", []byte("hello\n"), 0o644),
		fixtures.Whiteout("gone"))
	created := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, tc := range []struct {
		name, from, to string
		upper          string
		compression    layer.Compression
		wantManifest   types.MediaType
		wantLayers     int
	}{
		{"scratch to oci", "scratch", "oci:" + filepath.Join(dir, "s-oci") + ":v1", upper, "", types.OCIManifestSchema1, 1},
		{"scratch to docker-archive", "scratch", "docker-archive:" + filepath.Join(dir, "s.tar") + ":s:v1", upper, "", types.DockerManifestSchema2, 1},
		{"scratch zstd to oci", "scratch", "oci:" + filepath.Join(dir, "z-oci") + ":v1", upper, layer.Zstd, types.OCIManifestSchema1, 1},
		// The base is OCI-typed in its layout (export writes layouts so).
		{"base to oci", baseRef, "oci:" + filepath.Join(dir, "b-oci") + ":v1", upper, "", types.OCIManifestSchema1, 3},
		{"base to docker-archive", baseRef, "docker-archive:" + filepath.Join(dir, "b.tar"), upper, "", types.DockerManifestSchema2, 3},
		{"base uncompressed to oci", baseRef, "oci:" + filepath.Join(dir, "n-oci") + ":v1", upper, layer.None, types.OCIManifestSchema1, 3},
		{"empty upper onto base", baseRef, "oci:" + filepath.Join(dir, "e-oci") + ":v1", upperDir(t, fixtures.CreateDir(".", 0o755)), "", types.OCIManifestSchema1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := commit.Commit(ctx, commit.CommitRequest{
				From: tc.from, Changes: diff.Overlay(tc.upper), To: tc.to,
				Image:  []image.Option{image.WithCreated(created), image.WithComment(tc.name), image.WithChanges("ENV A=1")},
				Output: commit.Output{Compression: tc.compression},
			})
			must(t, err)
			img := readBack(t, tc.to, id)
			if mt, err := img.MediaType(); err != nil || mt != tc.wantManifest {
				t.Errorf("manifest media type %s (%v), want %s", mt, err, tc.wantManifest)
			}
			if n := layerCount(t, img); n != tc.wantLayers {
				t.Errorf("%d layers, want %d", n, tc.wantLayers)
			}
			cf, err := img.ConfigFile()
			must(t, err)
			h := cf.History[len(cf.History)-1]
			if h.Comment != tc.name || !h.Created.Equal(created) || h.EmptyLayer != (tc.wantLayers == 2) {
				t.Errorf("last history entry %+v", h)
			}
			if !strings.Contains(strings.Join(cf.Config.Env, " "), "A=1") {
				t.Errorf("--change not applied: Env %q", cf.Config.Env)
			}
		})
	}
}

// TestCommitBadBaseLeavesNothing: a base that cannot be read fails the
// commit before the destination is touched.
func TestCommitBadBaseLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	_, err := commit.Commit(context.Background(), commit.CommitRequest{
		From: "oci:" + filepath.Join(dir, "nope") + ":v1", Changes: diff.Overlay(upperDir(t, fixtures.CreateDir(".", 0o755))), To: "oci:" + out,
	})
	if err == nil {
		t.Fatal("a commit onto a missing base succeeded")
	}
	if _, serr := os.Stat(out); !os.IsNotExist(serr) {
		t.Fatalf("a failed commit made its destination: %v", serr)
	}
}

// TestCopy copies an image between transports unchanged: the same ID at
// every hop, and each copy validates.
func TestCopy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	img, err := random.Image(1024, 3)
	must(t, err)
	want, err := img.ConfigName()
	must(t, err)
	d, err := export.NewDestination(ctx, "oci:"+filepath.Join(dir, "src")+":x")
	must(t, err)
	must(t, d.Write(ctx, img))
	must(t, d.Close())
	refs := []string{"oci:" + filepath.Join(dir, "src") + ":x", "docker-archive:" + filepath.Join(dir, "a.tar") + ":a:1", "oci:" + filepath.Join(dir, "dst") + ":y"}
	for i := 1; i < len(refs); i++ {
		id, err := commit.Copy(ctx, refs[i-1], refs[i])
		must(t, err)
		if id != want {
			t.Fatalf("copy to %s returned %s, want %s", refs[i], id, want)
		}
		readBack(t, refs[i], want)
	}
	if _, err := commit.Copy(ctx, "oci:"+filepath.Join(dir, "nope"), refs[2]); err == nil {
		t.Error("a copy from a missing layout succeeded")
	}
}

// TestGC: GC hands each named store to its own gc, reports what they
// removed, and goes on after a store it must refuse, returning that
// error.
func TestGC(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	layoutDir := filepath.Join(dir, "layout")
	img, err := random.Image(64, 1)
	must(t, err)
	d, err := export.NewDestination(ctx, "oci:"+layoutDir)
	must(t, err)
	must(t, d.Write(ctx, img))
	must(t, d.Close())
	layoutTemp := filepath.Join(layoutDir, atomicfile.TempPrefix+"index.json-1")
	must(t, os.WriteFile(layoutTemp, nil, 0o644))
	archive := filepath.Join(dir, "out.tar")
	archiveTemp := filepath.Join(dir, atomicfile.TempPrefix+"out.tar-2")
	must(t, os.WriteFile(archiveTemp, nil, 0o644))
	state := filepath.Join(dir, "state")
	must(t, os.MkdirAll(filepath.Join(state, "blobs", "sha256"), 0o700))
	stateTemp := filepath.Join(state, "tmp", "step-1")
	must(t, os.MkdirAll(stateTemp, 0o700))

	var removed []string
	err = commit.GC(ctx, commit.GCRequest{
		Layouts:  []string{filepath.Join(dir, "not-a-layout"), layoutDir},
		Archives: []string{archive},
		StateDir: state,
		Removed:  func(p string) { removed = append(removed, p) },
	})
	if err == nil || !strings.Contains(err.Error(), "not an OCI layout") {
		t.Fatalf("GC: %v, want the refusal of the first layout", err)
	}
	sort.Strings(removed)
	want := []string{layoutTemp, archiveTemp, stateTemp}
	sort.Strings(want)
	if strings.Join(removed, "\n") != strings.Join(want, "\n") {
		t.Fatalf("GC removed\n%s\nwant\n%s", strings.Join(removed, "\n"), strings.Join(want, "\n"))
	}
	readBack(t, "oci:"+layoutDir, must1(t, img.ConfigName))
}

func must1[T any](t *testing.T, f func() (T, error)) T {
	t.Helper()
	v, err := f()
	must(t, err)
	return v
}
