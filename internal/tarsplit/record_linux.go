package tarsplit

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/vbatts/tar-split/tar/asm"
	"github.com/vbatts/tar-split/tar/storage"

	"github.com/layercommit/layercommit/internal/verify"
	"github.com/layercommit/layercommit/unpack"
)

// Unpack unpacks the layer tar r into dir in overlay form (unpack.Apply
// with WithOverlayForm) while recording its tar-split, gzipped, into the
// new file meta (created exclusively with perm, synced), in one pass. It returns
// the tar's length and fails with verify.ErrDigestMismatch unless the
// stream's sha256 is diffID. trailingEmpty appends the empty segment
// Docker's layerdb has after the trailer. opts are added to
// unpack.Apply's (a rootless store's user xattrs, say). The caller removes
// dir and meta on error.
func Unpack(ctx context.Context, r io.Reader, dir, meta string, perm os.FileMode, diffID v1.Hash, trailingEmpty bool, opts ...unpack.Option) (int64, error) {
	f, err := os.OpenFile(meta, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	gz := gzip.NewWriter(f)
	packer := storage.NewJSONPacker(gz)
	h := sha256.New()
	cr := &counter{r: io.TeeReader(r, h)}
	its, done, err := asm.NewInputTarStreamWithDone(cr, packer, nil)
	if err != nil {
		return 0, err
	}
	_, err = unpack.Apply(ctx, dir, its, append([]unpack.Option{unpack.WithOverlayForm()}, opts...)...)
	if err == nil {
		// The trailer and any padding after it are part of the diffID.
		_, err = io.Copy(io.Discard, its)
	}
	its.Close()
	if derr := <-done; err == nil && derr != nil {
		err = fmt.Errorf("recording tar-split: %w", derr)
	}
	if err != nil {
		return 0, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != diffID.Hex {
		return 0, fmt.Errorf("%w: layer stream has sha256:%s, the config says %s", verify.ErrDigestMismatch, got, diffID)
	}
	if trailingEmpty {
		if _, err := packer.AddEntry(storage.Entry{Type: storage.SegmentType, Payload: []byte{}}); err != nil {
			return 0, err
		}
	}
	if err := gz.Close(); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	return cr.n, f.Close()
}

type counter struct {
	r io.Reader
	n int64
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
