package export

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// LockWait is how long a writer or gc waits for a lock another process
// holds before it gives up with a lock error.
var LockWait = 2 * time.Minute

// A store lock is an flock(2) on a directory of the store, so that it
// needs no extra file and dies with its process (a killed writer never
// leaves a stale lock). OCI layouts use two:
//
//   - the use lock, on blobs/: shared by every writer from
//     NewDestination to Close (while blobs it wrote may not yet be
//     referenced), exclusive for gc;
//   - the index lock, on the layout dir: exclusive while index.json is
//     read, changed and replaced, so that no tag is lost.
type lockedDir struct {
	f    *os.File
	what string
}

// lockDir takes an flock of kind how (unix.LOCK_SH or unix.LOCK_EX) on
// dir, waiting up to LockWait. what names the holder in errors.
func lockDir(dir string, how int, what string) (*lockedDir, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", what, err)
	}
	deadline := time.Now().Add(LockWait)
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return &lockedDir{f: f, what: what}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", what, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("locking %s: another layercommit is using it (waited %s)", what, LockWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tryUpgrade tries to turn the lock exclusive without waiting. On failure
// the lock may have been dropped (flock converts by unlocking first).
func (l *lockedDir) tryUpgrade() bool {
	return unix.Flock(int(l.f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil
}

// unlock releases the lock. It is safe to call on nil and more than once.
func (l *lockedDir) unlock() {
	if l == nil || l.f == nil {
		return
	}
	l.f.Close() // closing the only descriptor drops the flock
	l.f = nil
}

// tryLockEntry takes an exclusive flock on p without waiting; ok is false
// when a live process holds one (the entry is in use). A missing p
// reports ok with a nil lock.
func tryLockEntry(p string) (l *lockedDir, ok bool) {
	f, err := os.Open(p)
	if err != nil {
		return nil, errors.Is(err, os.ErrNotExist)
	}
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		f.Close()
		return nil, false
	}
	return &lockedDir{f: f, what: filepath.Base(p)}, true
}

// holdEntry takes a shared flock on a temp file or dir this process made,
// so that gc (tryLockEntry) leaves it alone while the process lives.
func holdEntry(p string) (*lockedDir, error) {
	return lockDir(p, unix.LOCK_SH, p)
}
