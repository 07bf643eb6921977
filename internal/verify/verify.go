// Package verify is the one digest-verifying reader of layercommit: every
// blob, config and layer stream read from a store goes through it, so a
// store whose bytes are not what their name says fails closed, with one
// sentinel error per kind of fault.
package verify

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

var (
	// ErrDigestMismatch is returned at the end of a stream whose bytes do
	// not hash to the expected digest.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrSizeMismatch is returned when a stream is longer or shorter than
	// expected.
	ErrSizeMismatch = errors.New("size mismatch")
)

// UnknownSize, as the size of Reader, checks only the digest: for streams
// whose length no record states (a layer reassembled from a store).
const UnknownSize = -1

type reader struct {
	r         io.Reader
	closers   []io.Closer
	h         hash.Hash
	want      v1.Hash
	size, n   int64
	err       error
	checkSize bool
}

// Reader reads r and, at EOF, fails with ErrSizeMismatch or
// ErrDigestMismatch unless exactly size bytes hashing to want were read;
// it never reads more than size+1 bytes of r. With size UnknownSize only
// the digest is checked; any other negative size, or a digest that is not
// sha256, is rejected at the first Read. Closing it closes r and then
// also, in order; the first error is returned.
func Reader(r io.ReadCloser, want v1.Hash, size int64, also ...io.Closer) io.ReadCloser {
	return &reader{r: r, closers: append([]io.Closer{r}, also...), h: sha256.New(), want: want, size: size, checkSize: size != UnknownSize}
}

func (v *reader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if (v.checkSize && v.size < 0) || v.want.Algorithm != "sha256" || len(v.want.Hex) != 64 {
		v.err = fmt.Errorf("reading %s: bad size %d or digest", v.want, v.size)
		return 0, v.err
	}
	if v.checkSize {
		// One byte more than expected, so that a longer stream is noticed.
		if rest := v.size + 1 - v.n; int64(len(p)) > rest {
			p = p[:rest]
		}
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.checkSize && v.n > v.size {
		v.err = fmt.Errorf("reading %s: %w: more than %d bytes", v.want, ErrSizeMismatch, v.size)
		return n, v.err
	}
	if err == io.EOF {
		if v.checkSize && v.n != v.size {
			v.err = fmt.Errorf("reading %s: %w: %d of %d bytes", v.want, ErrSizeMismatch, v.n, v.size)
			return n, v.err
		}
		if got := Sum(v.h); got != v.want {
			v.err = fmt.Errorf("reading %s: %w: got %s", v.want, ErrDigestMismatch, got)
			return n, v.err
		}
		v.err = io.EOF
	} else if err != nil {
		v.err = err
	}
	return n, err
}

func (v *reader) Close() error {
	var first error
	for _, c := range v.closers {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Sum is the v1.Hash of a sha256 hash's state.
func Sum(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

// ReadAll reads all of r through Reader; for small blobs (manifests,
// configs, indexes) whose size is known.
func ReadAll(r io.ReadCloser, want v1.Hash, size int64) ([]byte, error) {
	v := Reader(r, want, size)
	b, err := io.ReadAll(v)
	if cerr := v.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return b, nil
}

// File reports whether the regular file p holds exactly the blob want of
// size bytes. A file under a digest name that does not is never trusted.
func File(p string, want v1.Hash, size int64) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("reading %s: %s is not a regular file", want, p)
	}
	if fi.Size() != size {
		return fmt.Errorf("reading %s: %w: %s has %d bytes, want %d", want, ErrSizeMismatch, p, fi.Size(), size)
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	v := Reader(f, want, size)
	_, err = io.Copy(io.Discard, v)
	v.Close()
	return err
}
