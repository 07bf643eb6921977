package containerdstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// lockProbe is how long opening a db waits for its flock: bbolt tries
// flock(LOCK_NB) and retries every 50 ms until the timeout, so this is a
// non-blocking probe plus one retry. A containerd holds its lock for as
// long as it runs, so waiting longer would gain nothing.
const lockProbe = 100 * time.Millisecond

// copyAttempts bounds the copies of a db taken while its writer commits.
const copyAttempts = 8

// view runs fn in a read transaction on the bolt file path.
//
// When no process holds the file's exclusive flock it is opened read-only
// in place (bbolt takes a shared flock for as long as fn runs). When a
// live containerd holds it, the file is copied and the copy read:
//
// Why the copy is consistent: bbolt writes a transaction's pages with
// pwrite, fsyncs, and only then pwrites the meta page (one of the two at
// the start of the file, alternating by txid) that makes them reachable;
// it never overwrites a page reachable from the newest meta until a later
// transaction has committed (pages freed by transaction N are reused only
// from N+1 on). So if both meta pages read the same before and after the
// copy, no transaction committed meanwhile and every page reachable from
// the copied metas is the one they point to; writes of a transaction in
// progress land only on free pages. We compare the meta pages before and
// after, require the copy's to equal them, and let bbolt check the copy's
// meta checksums when it opens it. A commit in between means another copy
// (copyAttempts in all), then ErrLocked.
//
// A file that bbolt cannot read (bad magic or checksum, a page of the
// wrong type, which bbolt reports by panicking) gives ErrCorrupt.
func view(path string, fn func(*bolt.Tx) error) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrLayout, path, err)
	}
	db, err := openDB(path, 0, &bolt.Options{ReadOnly: true, Timeout: lockProbe})
	if err == nil {
		defer db.Close()
		return viewDB(path, db, fn)
	}
	if errors.Is(err, ErrCorrupt) {
		return err
	}
	if !errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("%w: opening %s: %w", ErrCorrupt, path, err)
	}
	tmp, err := os.MkdirTemp("", "layercommit-containerd-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	cp := filepath.Join(tmp, filepath.Base(path))
	for range copyAttempts {
		ok, err := stableCopy(path, cp)
		if err != nil {
			return err
		}
		if !ok {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		db, err := openDB(cp, 0, &bolt.Options{ReadOnly: true, Timeout: lockProbe})
		if err != nil {
			return fmt.Errorf("%w: opening a copy of %s (held by a running containerd): %w", ErrCorrupt, path, err)
		}
		defer db.Close()
		return viewDB(path, db, fn)
	}
	return fmt.Errorf("%w: %s is held by a running containerd and changed during each of %d copies", ErrLocked, path, copyAttempts)
}

// openDB is bolt.Open that turns bbolt's panics on a corrupt file (a
// freelist page of the wrong type, say) into ErrCorrupt.
func openDB(path string, mode os.FileMode, o *bolt.Options) (db *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("%w: opening %s: %v", ErrCorrupt, path, r)
		}
	}()
	return bolt.Open(path, mode, o)
}

// viewDB runs fn in a read transaction of db, turning bbolt's panics on
// a corrupt page into ErrCorrupt.
func viewDB(path string, db *bolt.DB, fn func(*bolt.Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: reading %s: %v", ErrCorrupt, path, r)
		}
	}()
	return db.View(fn)
}

// updateDB runs fn in a write transaction of db, turning bbolt's panics
// on a corrupt page into ErrCorrupt (the transaction is then rolled
// back: bbolt's Update rolls back when fn does not return).
func updateDB(path string, db *bolt.DB, fn func(*bolt.Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: writing %s: %v", ErrCorrupt, path, r)
		}
	}()
	return db.Update(fn)
}

// metaPages returns the two meta pages at the start of the bolt file f.
// The page size is the one the first meta page records (page header of
// 16 bytes, then magic, version, page size as uint32 in the host's byte
// order, as bbolt writes them).
func metaPages(f *os.File) ([]byte, error) {
	head := make([]byte, 28)
	if _, err := f.ReadAt(head, 0); err != nil {
		return nil, fmt.Errorf("%w: reading the meta page of %s: %w", ErrCorrupt, f.Name(), err)
	}
	if binary.NativeEndian.Uint32(head[16:]) != 0xED0CDAED {
		return nil, fmt.Errorf("%w: %s is not a bolt file (bad magic)", ErrCorrupt, f.Name())
	}
	ps := binary.NativeEndian.Uint32(head[24:])
	if ps < 512 || ps > 1<<20 {
		return nil, fmt.Errorf("%w: %s: page size %d", ErrCorrupt, f.Name(), ps)
	}
	b := make([]byte, 2*int(ps))
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("%w: reading the meta pages of %s: %w", ErrCorrupt, f.Name(), err)
	}
	return b, nil
}

// stableCopy copies src to dst and reports whether src's meta pages stayed
// the same throughout (see view).
func stableCopy(src, dst string) (bool, error) {
	in, err := os.Open(src)
	if err != nil {
		return false, err
	}
	defer in.Close()
	before, err := metaPages(in)
	if err != nil {
		return false, err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return false, err
	}
	if _, err := io.Copy(out, io.NewSectionReader(in, 0, 1<<62)); err != nil {
		out.Close()
		return false, fmt.Errorf("copying %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return false, err
	}
	after, err := metaPages(in)
	if err != nil {
		return false, err
	}
	c, err := os.Open(dst)
	if err != nil {
		return false, err
	}
	copied, err := metaPages(c)
	c.Close()
	if err != nil {
		return false, err
	}
	return bytes.Equal(before, after) && bytes.Equal(before, copied), nil
}
