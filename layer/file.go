package layer

import (
	"fmt"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/layercommit/layercommit/internal/verify"
)

// Descriptor is what a store records of a layer blob it keeps.
type Descriptor struct {
	Digest    v1.Hash         `json:"digest"`
	DiffID    v1.Hash         `json:"diffID"`
	Size      int64           `json:"size"`
	MediaType types.MediaType `json:"mediaType"`
	// UncompressedSize is the tar's size; 0 when unknown (older records),
	// then only the diffID is checked on Uncompressed.
	UncompressedSize int64 `json:"uncompressedSize,omitempty"`
}

// CompressionOf is the compression a layer media type names.
func CompressionOf(mt types.MediaType) (Compression, error) {
	switch mt {
	case types.DockerLayer, types.OCILayer:
		return Gzip, nil
	case types.OCILayerZStd:
		return Zstd, nil
	case types.DockerUncompressedLayer, types.OCIUncompressedLayer:
		return None, nil
	}
	return "", fmt.Errorf("unsupported layer media type %q", mt)
}

// FromFile is the layer blob d kept in the file path: a value that can be
// read any number of times, every read size-limited and digest-checked
// (the blob against d.Digest and d.Size, the tar against d.DiffID). It
// fails if path is not a regular file of d.Size bytes; it does not read
// the file (reads verify). Remove on the result does nothing: the store
// that keeps the file owns it.
func FromFile(path string, d Descriptor) (*Layer, error) {
	c, err := CompressionOf(d.MediaType)
	if err != nil {
		return nil, err
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("opening layer blob %s: %w", d.Digest, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() != d.Size {
		return nil, fmt.Errorf("opening layer blob %s: %w: %s is not a regular file of %d bytes", d.Digest, ErrSizeMismatch, path, d.Size)
	}
	tarSize := d.UncompressedSize
	if tarSize == 0 {
		tarSize = verify.UnknownSize
	}
	return &Layer{path: path, digest: d.Digest, diffID: d.DiffID, size: d.Size, tarSize: tarSize,
		mediaType: d.MediaType, compression: c}, nil
}

// Descriptor is what a store records to reopen l with FromFile.
func (l *Layer) Descriptor() Descriptor {
	d := Descriptor{Digest: l.digest, DiffID: l.diffID, Size: l.size, MediaType: l.mediaType}
	if l.tarSize > 0 {
		d.UncompressedSize = l.tarSize
	}
	return d
}

// Compression is the compressor of l's blob.
func (l *Layer) Compression() Compression { return l.compression }
