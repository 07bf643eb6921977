package main

import (
	"archive/tar"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/layercommit/layercommit/internal/oracle"
)

// TestBuildCompression: build --compression writes the build's layers
// with that compressor (media type, digest) over the same tar (diffID),
// keys the step cache by it (a gzip build after a zstd one over the same
// state dir gives gzip), and refuses what it cannot do in one line with
// nothing written.
func TestBuildCompression(t *testing.T) {
	oracle.Root(t)
	skopeo := oracle.Tool(t, "skopeo")
	ctx := t.TempDir()
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM scratch\nCOPY f g /d/\n"), 0o644)
	os.WriteFile(filepath.Join(ctx, "f"), []byte(strings.Repeat("compress me\n", 1000)), 0o644)
	os.WriteFile(filepath.Join(ctx, "g"), []byte("g\n"), 0o644)
	state := t.TempDir()

	diffIDs := map[string]v1.Hash{}
	for _, tc := range []struct {
		compression string
		want        types.MediaType
	}{
		{"zstd", types.OCILayerZStd},
		{"gzip", types.OCILayer},
		{"none", types.OCIUncompressedLayer},
		{"", types.OCILayer},
	} {
		t.Run("compression="+tc.compression, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "layout")
			args := []string{"build", "-q", "--state-dir", state, "--source-date-epoch", "0", "-o", "oci:" + dir + ":x"}
			if tc.compression != "" {
				args = append(args, "--compression", tc.compression)
			}
			if code, _, stderr := cli(append(args, ctx)...); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			l := onlyLayer(t, dir)
			mt, err := l.MediaType()
			if err != nil || mt != tc.want {
				t.Errorf("layer media type %s (%v), want %s", mt, err, tc.want)
			}
			d, err := l.DiffID()
			if err != nil {
				t.Fatal(err)
			}
			diffIDs[tc.compression] = d
			// The blob decompresses to the tar holding the files.
			rc, err := l.Uncompressed()
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			var names []string
			tr := tar.NewReader(rc)
			for {
				h, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("reading the layer: %v", err)
				}
				names = append(names, h.Name)
			}
			if got := strings.Join(names, " "); got != "d/ d/f d/g" {
				t.Errorf("layer entries %q", got)
			}
			// skopeo copies it, checking every digest.
			if out, err := exec.Command(skopeo, "copy", "oci:"+dir+":x", "dir:"+t.TempDir()).CombinedOutput(); err != nil {
				t.Errorf("skopeo copy: %v\n%s", err, out)
			}
		})
	}
	for c, d := range diffIDs {
		if d != diffIDs["gzip"] {
			t.Errorf("diffID with %q is %s, with gzip %s: the tar must not change", c, d, diffIDs["gzip"])
		}
	}

	// Docker-typed base: a docker-archive image built here.
	archive := filepath.Join(t.TempDir(), "base.tar")
	if code, _, stderr := cli("build", "-q", "--state-dir", state, "-o", "docker-archive:"+archive+":base:1", ctx); code != 0 {
		t.Fatalf("docker-archive base: exit %d: %s", code, stderr)
	}
	onBase := t.TempDir()
	os.WriteFile(filepath.Join(onBase, "Dockerfile"), []byte("FROM docker-archive:"+archive+"\nCOPY Dockerfile /\n"), 0o644)
	for _, tc := range []struct {
		name, ctx string
		args      []string
		want      string
	}{
		{"estargz", ctx, []string{"--compression", "estargz"}, "layercommit: --compression estargz is not taken by build (gzip, zstd or none; the build cache keeps no layer annotations)\n"},
		{"unknown", ctx, []string{"--compression", "lz4"}, "layercommit: build: unknown compression \"lz4\" (gzip, zstd, zstd:chunked, estargz or none)\n"},
		{"bad level", ctx, []string{"--compression", "zstd", "--compression-level", "high"}, "layercommit: build: bad --compression-level \"high\"\n"},
		{"zstd on a Docker-typed base", onBase, []string{"--compression", "zstd"}, "layercommit: Dockerfile:1: FROM docker-archive:" + archive + ": --compression zstd needs OCI media types and the base has Docker's\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "layout")
			code, _, stderr := cli(append(append([]string{"build", "-q", "--state-dir", state, "-o", "oci:" + dir}, tc.args...), tc.ctx)...)
			if code == 0 || stderr != tc.want {
				t.Errorf("exit %d, stderr %q, want %q", code, stderr, tc.want)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("%s was written (%v)", dir, err)
			}
		})
	}
}

// onlyLayer returns the one layer of the one image in the layout at dir.
func onlyLayer(t *testing.T, dir string) v1.Layer {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("layout %s: %d manifests (%v)", dir, len(im.Manifests), err)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil || len(ls) != 1 {
		t.Fatalf("image has %d layers (%v)", len(ls), err)
	}
	return ls[0]
}
