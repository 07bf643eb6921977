package layer

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

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

type verifiedReader struct {
	r         io.ReadCloser
	closeAlso io.Closer
	h         hash.Hash
	want      v1.Hash
	size, n   int64
	err       error
}

// VerifiedReader reads at most size bytes of r and, at EOF, fails with
// ErrSizeMismatch or ErrDigestMismatch unless exactly size bytes hashing
// to want were read. A size below zero is rejected at the first Read.
// Closing it closes r.
func VerifiedReader(r io.ReadCloser, want v1.Hash, size int64) io.ReadCloser {
	return &verifiedReader{r: r, h: sha256.New(), want: want, size: size}
}

func (v *verifiedReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if v.size < 0 || v.want.Algorithm != "sha256" {
		v.err = fmt.Errorf("reading blob %s: bad size %d or algorithm", v.want, v.size)
		return 0, v.err
	}
	// Allow one byte more than expected so that a longer stream is noticed.
	if rest := v.size + 1 - v.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.n > v.size {
		v.err = fmt.Errorf("reading blob %s: %w: more than %d bytes", v.want, ErrSizeMismatch, v.size)
		return n, v.err
	}
	if err == io.EOF {
		if v.n != v.size {
			v.err = fmt.Errorf("reading blob %s: %w: %d of %d bytes", v.want, ErrSizeMismatch, v.n, v.size)
			return n, v.err
		}
		if got := sum(v.h); got != v.want {
			v.err = fmt.Errorf("reading blob %s: %w: got %s", v.want, ErrDigestMismatch, got)
			return n, v.err
		}
		v.err = io.EOF
	} else if err != nil {
		v.err = err
	}
	return n, err
}

func (v *verifiedReader) Close() error {
	err := v.r.Close()
	if v.closeAlso != nil {
		if cerr := v.closeAlso.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
