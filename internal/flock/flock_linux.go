// Package flock is the one lock of layercommit: an flock(2) on a file or
// directory of a store. It needs no lock file of its own when it locks a
// directory, and it dies with its process, so a killed writer never leaves
// a stale lock. Which store takes which lock, shared or exclusive, is said
// by the store's owner package (export for OCI layouts and archives,
// dockerroot for a data root, statedir for the state dir).
package flock

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLocked is returned (wrapped) when another process holds a lock that
// conflicts and the wait ran out.
var ErrLocked = errors.New("another layercommit is using it")

// Wait is how long Acquire waits by default for a lock another process
// holds. Tests shorten it.
var Wait = 2 * time.Minute

// Mode is shared or exclusive.
type Mode int

const (
	// Shared may be held by many processes at once.
	Shared Mode = unix.LOCK_SH
	// Exclusive excludes every other holder.
	Exclusive Mode = unix.LOCK_EX
)

// Lock is a held flock. Its zero value and nil are unlocked.
type Lock struct {
	f *os.File
}

// Acquire takes a lock of mode m on path (a file or directory, which must
// exist), waiting up to wait for a conflicting holder to go (0: try once).
// what names the locked thing in errors.
func Acquire(path string, m Mode, wait time.Duration, what string) (*Lock, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", what, err)
	}
	deadline := time.Now().Add(wait)
	for {
		err := unix.Flock(int(f.Fd()), int(m)|unix.LOCK_NB)
		if err == nil {
			return &Lock{f: f}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", what, err)
		}
		if !time.Now().Before(deadline) {
			f.Close()
			if wait > 0 {
				return nil, fmt.Errorf("locking %s: %w (waited %s)", what, ErrLocked, wait)
			}
			return nil, fmt.Errorf("locking %s: %w", what, ErrLocked)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Try takes an exclusive lock on path without waiting. ok is false when
// another process holds a lock on it (the entry is in use); a missing path
// gives ok with a nil lock.
func Try(path string) (l *Lock, ok bool) {
	l, err := Acquire(path, Exclusive, 0, path)
	if err == nil {
		return l, true
	}
	return nil, errors.Is(err, os.ErrNotExist)
}

// TryUpgrade tries to turn the lock exclusive without waiting. On failure
// the lock may have been dropped (flock converts by unlocking first).
func (l *Lock) TryUpgrade() bool {
	return l != nil && l.f != nil && unix.Flock(int(l.f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil
}

// Unlock releases the lock. It is safe on nil and more than once.
func (l *Lock) Unlock() {
	if l == nil || l.f == nil {
		return
	}
	l.f.Close() // closing the only descriptor drops the flock
	l.f = nil
}
