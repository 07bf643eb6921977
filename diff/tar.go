package diff

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/compat"
)

// Option configures Write.
type Option func(*writeOptions)

type writeOptions struct {
	profile compat.Profile
	clamp   *int64
	onEntry func(Change)
}

// WithCompat picks the profile whose bytes Write reproduces (compat.Default
// when not given).
func WithCompat(p compat.Profile) Option { return func(o *writeOptions) { o.profile = p } }

// WithMtimeClamp writes no mtime later than epoch (SOURCE_DATE_EPOCH).
func WithMtimeClamp(epoch int64) Option { return func(o *writeOptions) { o.clamp = &epoch } }

// WithProgress calls fn for each change after it is written.
func WithProgress(fn func(Change)) Option { return func(o *writeOptions) { o.onEntry = fn } }

// copyBufferSize is the read size for file contents and the size of the
// write buffer in front of the output.
const copyBufferSize = 1 << 20

// Write walks src and writes its layer tar to w. It returns the diffID (the
// sha256 of every byte written, trailer included) and the tar's size,
// both computed in the same pass. On error some bytes may already have been
// written to w; the caller discards them. Write does not close w.
func Write(ctx context.Context, w io.Writer, src Source, opts ...Option) (v1.Hash, int64, error) {
	o := writeOptions{profile: compat.Default}
	for _, opt := range opts {
		opt(&o)
	}
	h := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(w, h)}
	bw := bufio.NewWriterSize(cw, copyBufferSize)
	tw := tar.NewWriter(bw)
	rules := headerRules{profile: o.profile, seen: map[uint64]string{}, clamp: o.clamp}
	buf := make([]byte, copyBufferSize)
	err := src.Changes(ctx, func(c Change) error {
		hdr, marker := rules.headers(c)
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("writing header of %s: %w", c.Path, err)
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
			if err := copyFile(tw, c.Source, hdr.Size, buf); err != nil {
				return fmt.Errorf("writing %s: %w", c.Path, err)
			}
		}
		if marker != nil {
			if err := tw.WriteHeader(marker); err != nil {
				return fmt.Errorf("writing opaque marker of %s: %w", c.Path, err)
			}
		}
		if o.onEntry != nil {
			o.onEntry(c)
		}
		return nil
	})
	if err != nil {
		return v1.Hash{}, 0, err
	}
	if err := tw.Close(); err != nil {
		return v1.Hash{}, 0, fmt.Errorf("closing tar stream: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return v1.Hash{}, 0, fmt.Errorf("writing tar stream: %w", err)
	}
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}, cw.n, nil
}

// ErrSizeChanged is returned when a file's size differs from what lstat
// said while its data is being written.
var ErrSizeChanged = errors.New("file changed size while being read")

// copyFile writes exactly size bytes of the file at p to w.
func copyFile(w io.Writer, p string, size int64, buf []byte) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.CopyBuffer(w, io.LimitReader(f, size), buf)
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%w: %d of %d bytes", ErrSizeChanged, n, size)
	}
	if m, _ := f.Read(buf[:1]); m != 0 {
		return fmt.Errorf("%w: more than %d bytes", ErrSizeChanged, size)
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Reader returns the layer tar of src as a stream, written by Write in a
// goroutine. A failure reaches the reader as the error of Read. The caller
// must Close the reader; closing early stops the walk.
func Reader(ctx context.Context, src Source, opts ...Option) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		_, _, err := Write(ctx, pw, src, opts...)
		pw.CloseWithError(err)
	}()
	return pr
}
