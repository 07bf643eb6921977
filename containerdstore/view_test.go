package containerdstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestViewCopyUnderChurn reads a bolt file whose writer (this process,
// on its own descriptor, so the flock conflicts as a containerd's does)
// commits as fast as it can, rewriting and growing, so that freed pages
// are reused all the time. Each transaction writes the same counter into
// every key of a bucket, with a value big enough to span pages; a copy
// that mixed pages of two transactions would show two counters (or
// pages bbolt cannot read). Every read must see one counter, or refuse
// with ErrLocked. Checked: with stableCopy's meta-page comparison taken
// out, this test reads a torn copy within a second.
func TestViewCopyUnderChurn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	// NoSync: no fsyncs, many more commits; readers see the page cache
	// either way.
	db, err := bolt.Open(path, 0o644, &bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const keys = 64
	write := func(n uint64) error {
		return db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("b"))
			if err != nil {
				return err
			}
			v := make([]byte, 1000+int(n%7)*600)
			binary.LittleEndian.PutUint64(v, n)
			for k := range keys {
				if err := b.Put([]byte(fmt.Sprint(k)), v); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := write(0); err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan uint64)
	go func() {
		n := uint64(1)
		for ; ; n++ {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			if err := write(n); err != nil {
				panic(err)
			}
		}
	}()
	ok, locked := 0, 0
	for range 100 {
		err := view(path, func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("b"))
			var first []byte
			return b.ForEach(func(k, v []byte) error {
				if first == nil {
					first = v[:8]
				} else if !bytes.Equal(first, v[:8]) {
					return fmt.Errorf("key %s has counter %d, key 0 %d: a torn copy", k, binary.LittleEndian.Uint64(v), binary.LittleEndian.Uint64(first))
				}
				return nil
			})
		})
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrLocked):
			locked++
		default:
			close(stop)
			<-done
			t.Fatal(err)
		}
	}
	close(stop)
	n := <-done
	t.Logf("%d consistent reads, %d refused as locked, during %d commits", ok, locked, n)
	if ok == 0 {
		t.Fatal("no read succeeded")
	}
}
