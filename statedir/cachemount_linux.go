package statedir

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/layercommit/layercommit/internal/flock"
)

// Cache mount sharing modes, as BuildKit names them.
const (
	SharingShared  = "shared"
	SharingPrivate = "private"
	SharingLocked  = "locked"
)

// lockedWait bounds how long a locked cache mount waits for its holder.
var lockedWait = 24 * time.Hour

// CacheMount returns the dir of the RUN --mount=type=cache whose key is
// key (the builder says what goes in it: the id and what seeds it), kept
// between builds, and holds it until release:
//   - shared: a shared flock on instance 0; any number of users at once
//     (a locked user excludes them).
//   - locked: an exclusive flock on instance 0, waiting for other users.
//   - private: the first instance no one uses, made when all are in use.
//
// A new instance is made by init on a fresh dir renamed into place; when
// another build made it first, theirs is used. GC keeps cache mounts (a
// cache, not leftovers).
func (d *Dir) CacheMount(key, sharing string, init func(dir string) error) (dir string, release func(), err error) {
	sum := sha256.Sum256([]byte(key))
	top := d.cacheMountDir(hex.EncodeToString(sum[:]))
	if err := os.MkdirAll(top, 0o700); err != nil {
		return "", nil, fmt.Errorf("making cache mount dir: %w", err)
	}
	for i := 0; ; i++ {
		inst := filepath.Join(top, strconv.Itoa(i))
		if err := makeInstance(top, inst, init); err != nil {
			return "", nil, err
		}
		var lk *flock.Lock
		switch sharing {
		case SharingPrivate:
			lk, err = flock.Acquire(inst, flock.Exclusive, 0, "cache mount "+inst)
			if errors.Is(err, flock.ErrLocked) {
				continue
			}
		case SharingLocked:
			lk, err = flock.Acquire(inst, flock.Exclusive, lockedWait, "cache mount "+inst)
		case "", SharingShared:
			lk, err = flock.Acquire(inst, flock.Shared, lockedWait, "cache mount "+inst)
		default:
			return "", nil, fmt.Errorf("cache mount sharing %q: want shared, private or locked", sharing)
		}
		if err != nil {
			return "", nil, err
		}
		return inst, lk.Unlock, nil
	}
}

func makeInstance(top, inst string, init func(string) error) error {
	if _, err := os.Stat(inst); err == nil {
		return nil
	}
	tmp, err := os.MkdirTemp(top, "new-")
	if err != nil {
		return fmt.Errorf("making cache mount: %w", err)
	}
	if err := init(tmp); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("making cache mount: %w", err)
	}
	if err := os.Rename(tmp, inst); err != nil {
		os.RemoveAll(tmp)
		if _, serr := os.Stat(inst); serr == nil {
			return nil
		}
		return fmt.Errorf("making cache mount: %w", err)
	}
	return nil
}
