package containersstorage

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

	"github.com/layercommit/layercommit/internal/tarsplit"
	"github.com/layercommit/layercommit/internal/userns"
	"github.com/layercommit/layercommit/internal/verify"
	"github.com/layercommit/layercommit/unpack"
)

// unpackLayer unpacks the layer tar r into the layer dir dir in overlay
// form, recording its tar-split into the new file meta, and returns the
// tar's length (tarsplit.Unpack). In a user namespace (a rootless store)
// it writes the overlay form rootless podman's native overlay reads, as
// containers/storage does there: opaque dirs marked user.overlay.opaque
// (trusted.* is out of reach; fuse-overlayfs reads that mark too) and
// device nodes, which the namespace may not make, left out.
//
// tarsplit.Unpack takes no unpack options; this is its loop with them.
func unpackLayer(ctx context.Context, r io.Reader, dir, meta string, diffID v1.Hash) (int64, error) {
	if !userns.RunningInUserNS() {
		return tarsplit.Unpack(ctx, r, dir, meta, 0o600, diffID, false)
	}
	f, err := os.OpenFile(meta, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	gz := gzip.NewWriter(f)
	h := sha256.New()
	cr := &countReader{r: io.TeeReader(r, h)}
	its, done, err := asm.NewInputTarStreamWithDone(cr, storage.NewJSONPacker(gz), nil)
	if err != nil {
		return 0, err
	}
	_, err = unpack.Apply(ctx, dir, its, unpack.WithOverlayForm(), unpack.WithUserXattr(),
		unpack.WithDeviceSkip(func(string, error) {}))
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
	if err := gz.Close(); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	return cr.n, f.Close()
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
