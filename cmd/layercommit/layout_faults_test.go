package main

import (
	"archive/tar"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/internal/oracle"
)

// TestStoreFaultsOnRead: HOSTILE.md F24 (an OCI layout whose blob is a
// symlink or a directory) and F25 (a docker-archive whose manifest lists
// more layers than the config's diff_ids) are refused with one line, and
// nothing is written.
func TestStoreFaultsOnRead(t *testing.T) {
	oracle.Root(t)
	dir := t.TempDir()
	upper := filepath.Join(dir, "up")
	// The commits on top use another upper dir, so that their own layer
	// is not the base's blob (which would then be found already written).
	upper2 := filepath.Join(dir, "up2")
	if err := fixtures.Apply(dir, fixtures.CreateDir("up", 0o755), fixtures.CreateFile("up/x", []byte("x\n"), 0o644),
		fixtures.CreateDir("up2", 0o755), fixtures.CreateFile("up2/y", []byte("y\n"), 0o644)); err != nil {
		t.Fatal(err)
	}
	layer := func(layout string) string {
		t.Helper()
		lc(t, false, "commit", "-q", "--upper", upper, "-o", "oci:"+layout+":v1")
		img := checkImage(t, "oci:"+layout+":v1")
		ls, err := img.Layers()
		if err != nil || len(ls) != 1 {
			t.Fatalf("layers: %v", err)
		}
		d, _ := ls[0].Digest()
		return filepath.Join(layout, "blobs", "sha256", d.Hex)
	}
	symlinked := filepath.Join(dir, "symlinked")
	blob := layer(symlinked)
	if err := os.Rename(blob, filepath.Join(dir, "elsewhere")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "elsewhere"), blob); err != nil {
		t.Fatal(err)
	}
	dirBlob := filepath.Join(dir, "dirblob")
	blob = layer(dirBlob)
	if err := os.Remove(blob); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(blob, 0o755); err != nil {
		t.Fatal(err)
	}

	archive := filepath.Join(dir, "a.tar")
	lc(t, false, "commit", "-q", "--upper", upper, "-o", "docker-archive:"+archive+":x:1")
	doubled := filepath.Join(dir, "doubled.tar")
	rewriteManifest(t, archive, doubled, func(m []map[string]any) {
		m[0]["Layers"] = append(m[0]["Layers"].([]any), m[0]["Layers"].([]any)...)
	})

	out := filepath.Join(dir, "out")
	for _, tc := range []struct{ name, from, want string }{
		{"F24 symlinked blob", "oci:" + symlinked + ":v1", "symlink"},
		{"F24 directory blob", "oci:" + dirBlob + ":v1", "sha256"},
		{"F25 layers vs diff_ids", "docker-archive:" + doubled, "diff_ids"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr := lc(t, true, "commit", "-q", "--from", tc.from, "--upper", upper2, "-o", "oci:"+out+":v1")
			assertOneLineError(t, stderr, tc.want)
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("output written: %v", err)
			}
		})
	}
}

// rewriteManifest copies a docker-archive, changing its manifest.json.
func rewriteManifest(t *testing.T, src, dst string, change func([]map[string]any)) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	outf, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer outf.Close()
	tr, tw := tar.NewReader(in), tar.NewWriter(outf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "manifest.json" {
			var m []map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			change(m)
			if b, err = json.Marshal(m); err != nil {
				t.Fatal(err)
			}
			h.Size = int64(len(b))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}
