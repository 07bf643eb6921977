package containersstorage

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// readLock takes a shared fcntl lock on the whole of path, as
// containers/storage's lockfile.RLock does, retrying until timeout. It
// opens the file read-only and never creates it. The returned func
// releases the lock.
func readLock(path string, timeout time.Duration) (func(), error) {
	return fcntlLock(path, unix.F_RDLCK, timeout)
}

// writeLock takes the exclusive fcntl lock containers/storage's
// lockfile.Lock takes, as readLock does; the file must exist.
func writeLock(path string, timeout time.Duration) (func(), error) {
	return fcntlLock(path, unix.F_WRLCK, timeout)
}

func fcntlLock(path string, typ int16, timeout time.Duration) (func(), error) {
	mode := os.O_RDONLY
	if typ == unix.F_WRLCK {
		mode = os.O_RDWR
	}
	f, err := os.OpenFile(path, mode|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", path, err)
	}
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: 0, Len: 0}
	deadline := time.Now().Add(timeout)
	for {
		err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk)
		if err == nil {
			return func() {
				unlock := unix.Flock_t{Type: unix.F_UNLCK}
				unix.FcntlFlock(f.Fd(), unix.F_SETLK, &unlock)
				f.Close()
			}, nil
		}
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("%w: %s held by another process for %s", ErrLocked, path, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lastWriterSize is the length of the last-writer token containers/storage
// keeps at the start of a lock file.
const lastWriterSize = 64

// touchLock writes a new last-writer token at the start of the lock file
// path, as containers/storage's lockfile.Touch does after a write: a
// process holding the store's records in memory compares the token when
// it next takes the lock and reloads them when it changed, instead of
// writing back a view without ours. The caller holds the write lock.
func touchLock(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening lock %s: %w", path, err)
	}
	tok := make([]byte, lastWriterSize)
	if _, err := rand.Read(tok); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteAt(tok, 0); err != nil {
		f.Close()
		return fmt.Errorf("writing lock %s: %w", path, err)
	}
	return f.Close()
}
