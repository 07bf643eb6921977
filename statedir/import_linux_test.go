package statedir_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/layercommit/layercommit/internal/verify"
	"github.com/layercommit/layercommit/layer"
	"github.com/layercommit/layercommit/statedir"
)

func sha(b []byte) v1.Hash {
	h, _ := v1.NewHash(fmt.Sprintf("sha256:%x", sha256.Sum256(b)))
	return h
}

// gzLayer is a one-file layer: its tar, its gzip blob and descriptor.
func gzLayer(t *testing.T, content string) ([]byte, layer.Descriptor) {
	t.Helper()
	var tb, gb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: int64(len(content))})
	tw.Write([]byte(content))
	tw.Close()
	zw := gzip.NewWriter(&gb)
	zw.Write(tb.Bytes())
	zw.Close()
	return gb.Bytes(), layer.Descriptor{Digest: sha(gb.Bytes()), DiffID: sha(tb.Bytes()), Size: int64(gb.Len()), MediaType: types.OCILayer}
}

// TestImportBlob: a blob from an imported cache is published only when
// its digest, size and diffID all match.
func TestImportBlob(t *testing.T) {
	good, desc := gzLayer(t, "hello\n")
	other, otherDesc := gzLayer(t, "other\n")
	corrupt := bytes.Clone(good)
	corrupt[len(corrupt)-5] ^= 0xff
	for _, tc := range []struct {
		name    string
		data    []byte
		desc    func(layer.Descriptor) layer.Descriptor
		wantErr error
	}{
		{"good", good, func(d layer.Descriptor) layer.Descriptor { return d }, nil},
		{"corrupt bytes", corrupt, func(d layer.Descriptor) layer.Descriptor { return d }, verify.ErrDigestMismatch},
		{"another blob", other, func(d layer.Descriptor) layer.Descriptor { return d }, verify.ErrDigestMismatch},
		{"short", good[:len(good)-1], func(d layer.Descriptor) layer.Descriptor { return d }, verify.ErrSizeMismatch},
		{"wrong diffID", other, func(layer.Descriptor) layer.Descriptor {
			d := otherDesc
			d.DiffID = desc.DiffID
			return d
		}, verify.ErrDigestMismatch},
		{"unknown media type", good, func(d layer.Descriptor) layer.Descriptor { d.MediaType = "text/plain"; return d }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := statedir.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			d := tc.desc(desc)
			err = st.ImportBlob(d, bytes.NewReader(tc.data))
			if tc.name == "good" {
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := st.BlobLayer(d); !ok {
					t.Fatal("imported blob not found")
				}
				return
			}
			if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if ents, _ := os.ReadDir(st.BlobDir()); len(ents) != 0 {
				t.Errorf("left %v in the blob dir", ents)
			}
		})
	}
}
