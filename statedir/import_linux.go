package statedir

import (
	"fmt"
	"io"

	"github.com/layercommit/layercommit/internal/atomicfile"
	"github.com/layercommit/layercommit/internal/verify"
	"github.com/layercommit/layercommit/layer"
)

// ImportBlob copies the layer blob desc, read from r (an imported build
// cache's; ImportBlob does not close it), into BlobDir. The copy is
// published under its digest only after the stream matched desc.Size and
// desc.Digest and its decompressed tar matched desc.DiffID (and
// desc.UncompressedSize when set); on any mismatch nothing is left
// behind and the error wraps verify.ErrDigestMismatch or
// ErrSizeMismatch. A blob already present is kept and r is not read.
func (d *Dir) ImportBlob(desc layer.Descriptor, r io.Reader) error {
	if desc.Size < 0 || desc.UncompressedSize < 0 {
		return fmt.Errorf("importing blob %s: bad size %d", desc.Digest, desc.Size)
	}
	if _, ok := d.BlobLayer(desc); ok {
		return nil
	}
	if _, err := layer.CompressionOf(desc.MediaType); err != nil {
		return fmt.Errorf("importing blob %s: %w", desc.Digest, err)
	}
	dest := d.blobPath(desc.Digest)
	f, err := atomicfile.Create(dest, 0o600)
	if err != nil {
		return err
	}
	defer f.Abort()
	v := verify.Reader(io.NopCloser(r), desc.Digest, desc.Size)
	if _, err := io.Copy(f, v); err != nil {
		return fmt.Errorf("importing blob %s: %w", desc.Digest, err)
	}
	// The diffID is what the image config names: check it before any
	// config that names it is used.
	l, err := layer.FromFile(f.Name(), desc)
	if err != nil {
		return fmt.Errorf("importing blob %s: %w", desc.Digest, err)
	}
	u, err := l.Uncompressed()
	if err != nil {
		return fmt.Errorf("importing blob %s: %w", desc.Digest, err)
	}
	_, err = io.Copy(io.Discard, u)
	if cerr := u.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("importing blob %s: checking diffID %s: %w", desc.Digest, desc.DiffID, err)
	}
	return f.Commit() // fsync, rename, fsync of the dir
}
