package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/export"
)

// openCounting is a base image whose layers count the streams opened on
// them and, as an OCI layout's layers do, compute DiffID by reading the
// whole uncompressed stream.
type openCounting struct {
	v1.Image
	opens *atomic.Int32
}

func (i openCounting) Layers() ([]v1.Layer, error) {
	ls, err := i.Image.Layers()
	for n, l := range ls {
		ls[n] = countingLayer{Layer: l, opens: i.opens}
	}
	return ls, err
}

type countingLayer struct {
	v1.Layer
	opens *atomic.Int32
}

func (l countingLayer) Uncompressed() (io.ReadCloser, error) {
	l.opens.Add(1)
	return l.Layer.Uncompressed()
}

func (l countingLayer) Compressed() (io.ReadCloser, error) {
	l.opens.Add(1)
	return l.Layer.Compressed()
}

func (l countingLayer) DiffID() (v1.Hash, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return v1.Hash{}, err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return v1.Hash{}, err
	}
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}, nil
}

// TestBaseLayersReadOnce: a build's base layers are read once, by the
// unpack (checked there against the config's diffIDs), never decompressed
// first to compute a diffID the config already lists; a second build
// over the same state dir reads none.
func TestBaseLayersReadOnce(t *testing.T) {
	base := busyboxImage(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "FROM base\nRUN echo hi > /x\n"})
	state := t.TempDir()
	var opens atomic.Int32
	resolve := func(ctx context.Context, ref string) (v1.Image, error) {
		img, err := export.Open(ctx, base)
		return openCounting{Image: img, opens: &opens}, err
	}
	for _, want := range []int32{1, 0} {
		opens.Store(0)
		if _, err := testBuildNoWrite(t, Options{ContextDir: ctxDir, StateDir: state, Resolve: resolve, NoCache: true}); err != nil {
			t.Fatal(err)
		}
		if got := opens.Load(); got != want {
			t.Fatalf("the base layer's streams were opened %d times, want %d", got, want)
		}
	}
}

// testBuildNoWrite builds without writing or validating the image (which
// reads every layer).
func testBuildNoWrite(t *testing.T, o Options) (v1.Hash, error) {
	t.Helper()
	res, err := Build(t.Context(), o)
	if err != nil {
		return v1.Hash{}, err
	}
	return res.ID, nil
}
