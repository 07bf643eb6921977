package export

import "github.com/layercommit/layercommit/internal/flock"

// A store lock is an flock (internal/flock) on a directory of the store.
// OCI layouts use two:
//
//   - the use lock, on blobs/: shared by every writer from
//     NewDestination to Close (while blobs it wrote may not yet be
//     referenced), exclusive for gc;
//   - the index lock, on the layout dir: exclusive while index.json is
//     read, changed and replaced, so that no tag is lost.
//
// Temp files and dirs beside a destination are held shared by the
// process writing them (holdEntry), so that gc, which tries each one
// exclusive without waiting (flock.Try), leaves them alone while it lives.
func lockDir(dir string, m flock.Mode, what string) (*flock.Lock, error) {
	return flock.Acquire(dir, m, flock.Wait, what)
}

// holdEntry takes a shared lock on a temp file or dir this process made.
func holdEntry(p string) (*flock.Lock, error) {
	return flock.Acquire(p, flock.Shared, flock.Wait, p)
}
