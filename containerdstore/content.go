package containerdstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// BlobPath is where the local content store keeps the blob d
// (blobs/sha256/<hex>). Only sha256 is accepted.
func (s *Store) BlobPath(d v1.Hash) (string, error) {
	if d.Algorithm != "sha256" || len(d.Hex) != 64 {
		return "", fmt.Errorf("%w: digest %s is not sha256", ErrDigest, d)
	}
	if _, err := hex.DecodeString(d.Hex); err != nil {
		return "", fmt.Errorf("%w: digest %s: %w", ErrDigest, d, err)
	}
	return filepath.Join(s.ContentDir(), "blobs", "sha256", d.Hex), nil
}

// Blob opens the blob d of the content store. The reader returns
// ErrDigest instead of io.EOF when the content does not hash to d or
// when size >= 0 and the blob is not size bytes long; it never reads
// more than size bytes. The caller closes it.
func (s *Store) Blob(d v1.Hash, size int64) (io.ReadCloser, error) {
	p, err := s.BlobPath(d)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: blob %s in %s", ErrNotFound, d, s.ContentDir())
		}
		return nil, fmt.Errorf("opening blob %s: %w", d, err)
	}
	return &verified{f: f, want: d, size: size, h: sha256.New()}, nil
}

// verified checks a blob's digest and size as it is read.
type verified struct {
	f    *os.File
	want v1.Hash
	size int64 // -1: unknown
	n    int64
	h    hash.Hash
	err  error // sticky
}

func (v *verified) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if v.size >= 0 && int64(len(p)) > v.size-v.n+1 {
		// Read one byte past the size at most, to see an overlong blob.
		p = p[:v.size-v.n+1]
	}
	n, err := v.f.Read(p)
	v.n += int64(n)
	v.h.Write(p[:n])
	if v.size >= 0 && v.n > v.size {
		v.err = fmt.Errorf("%w: blob %s is longer than %d bytes", ErrDigest, v.want, v.size)
		return 0, v.err
	}
	if err == io.EOF {
		if v.size >= 0 && v.n != v.size {
			v.err = fmt.Errorf("%w: blob %s has %d bytes, want %d", ErrDigest, v.want, v.n, v.size)
		} else if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want.Hex {
			v.err = fmt.Errorf("%w: blob %s hashes to sha256:%s", ErrDigest, v.want, got)
		} else {
			v.err = io.EOF
		}
		return n, v.err
	}
	if err != nil {
		v.err = fmt.Errorf("reading blob %s: %w", v.want, err)
		return n, v.err
	}
	return n, nil
}

func (v *verified) Close() error { return v.f.Close() }

// tempPrefix names writeBlob's temp files in blobs/sha256. containerd's
// content walk skips names that are not a digest; WriteImage removes those
// an interrupted write left, under meta.db's lock, which every writer
// holds.
const tempPrefix = ".layercommit-"

// writeBlob streams r into the content store as the blob want of size
// bytes (temp file beside the target, fsync, rename, fsync of the dir),
// checking the digest and size while writing. A blob already there with
// the right size is kept and r is not read.
func (s *Store) writeBlob(want v1.Hash, size int64, open func() (io.ReadCloser, error)) error {
	target, err := s.BlobPath(want)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(target); err == nil && fi.Mode().IsRegular() && fi.Size() == size {
		return nil
	}
	dir := filepath.Dir(target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	r, err := open()
	if err != nil {
		return fmt.Errorf("opening blob %s: %w", want, err)
	}
	defer r.Close()
	tmp, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(r, size+1))
	if err != nil {
		return fmt.Errorf("writing blob %s: %w", want, err)
	}
	if n != size {
		return fmt.Errorf("%w: blob %s has %d bytes, want %d", ErrDigest, want, n, size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want.Hex {
		return fmt.Errorf("%w: blob %s hashes to sha256:%s", ErrDigest, want, got)
	}
	// containerd's local store makes a committed blob read-only
	// (plugins/content/local/writer.go: mode &^ 0333).
	if err := tmp.Chmod(0o444); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("syncing blob %s: %w", want, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return fmt.Errorf("renaming blob %s into place: %w", want, err)
	}
	ok = true
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return d.Close()
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
