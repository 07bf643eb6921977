package containersstorage_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/containersstorage"
)

// libpodDB writes a libpod database holding the buckets given.
func libpodDB(t *testing.T, root string, buckets map[string]map[string]string) {
	t.Helper()
	p := filepath.Join(root, "libpod", "bolt_state.db")
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(p, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		for name, ctrs := range buckets {
			b, err := tx.CreateBucket([]byte(name))
			if err != nil {
				return err
			}
			for id, config := range ctrs {
				cb, err := b.CreateBucket([]byte(id))
				if err != nil {
					return err
				}
				if err := cb.Put([]byte("config"), []byte(config)); err != nil {
					return err
				}
				if err := cb.Put([]byte("state"), []byte(`{"state":3,"pid":42}`)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestLibpodBadInput(t *testing.T) {
	good := `{"id":"` + ctrID + `","name":"web","entrypoint":["/bin/sh"],"command":["-c","x"],"rootfsImageName":"localhost/base:1","spec":{"process":{"env":["A=1"],"cwd":"/w"}}}`
	for _, tc := range []struct {
		name    string
		buckets map[string]map[string]string
		lock    bool
		want    error
		msg     string
	}{
		{name: "found", buckets: map[string]map[string]string{"ctr": {ctrID: good}}},
		{name: "no database", want: containersstorage.ErrNotFound, msg: "has no libpod database"},
		{name: "another layout", buckets: map[string]map[string]string{"containers": {ctrID: good}}, want: containersstorage.ErrLayout, msg: "no ctr bucket"},
		{name: "not a podman container", buckets: map[string]map[string]string{"ctr": {}}, want: containersstorage.ErrNotFound, msg: "not a podman container"},
		{name: "corrupt config", buckets: map[string]map[string]string{"ctr": {ctrID: `{"id":`}}, want: containersstorage.ErrCorrupt, msg: "config of container"},
		{name: "record of another container", buckets: map[string]map[string]string{"ctr": {ctrID: `{"id":"` + layerID + `"}`}}, want: containersstorage.ErrCorrupt, msg: "names"},
		{name: "locked by a live podman", buckets: map[string]map[string]string{"ctr": {ctrID: good}}, lock: true, want: containersstorage.ErrLocked, msg: "held by another process"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, run := fakeStore(t)
			if tc.buckets != nil {
				libpodDB(t, root, tc.buckets)
			}
			if tc.lock {
				f, err := os.Open(filepath.Join(root, "libpod", "bolt_state.db"))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
					t.Fatal(err)
				}
			}
			s, err := containersstorage.Open(root, run)
			if err != nil {
				t.Fatal(err)
			}
			s.LockTimeout = 200 * time.Millisecond
			c, err := s.Libpod(ctrID)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if c.Name != "web" || c.ImageName != "localhost/base:1" || c.Spec.Process.Cwd != "/w" || !c.Running() || c.State.Pid != 42 {
					t.Fatalf("record %+v", c)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, want %v containing %q on one line", err, tc.want, tc.msg)
			}
		})
	}
}
