package export

import (
	"os"

	"github.com/layercommit/layercommit/internal/flock"
)

// tempBlobs is the blob space of a destination that keeps new layer blobs
// outside the destination until Write (docker-archive, registry,
// docker-root): a temp dir, held with a shared lock (when hold is set) so
// that gc leaves it alone while its writer lives.
type tempBlobs struct {
	tmp  string
	hold *flock.Lock
}

// newTempBlobs makes a temp dir in dir (os.TempDir when "") named with
// prefix, and holds it when hold is set.
func newTempBlobs(dir, prefix string, hold bool) (tempBlobs, error) {
	tmp, err := os.MkdirTemp(dir, prefix)
	if err != nil {
		return tempBlobs{}, err
	}
	t := tempBlobs{tmp: tmp}
	if hold {
		if t.hold, err = holdEntry(tmp); err != nil {
			os.RemoveAll(tmp)
			return tempBlobs{}, err
		}
	}
	return t, nil
}

func (t *tempBlobs) BlobDir() string { return t.tmp }

// Close removes the temp dir and releases it. It is safe to call more
// than once.
func (t *tempBlobs) Close() error {
	if t.tmp == "" {
		return nil
	}
	err := os.RemoveAll(t.tmp)
	t.tmp = ""
	t.hold.Unlock()
	return err
}
