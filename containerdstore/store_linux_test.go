package containerdstore

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	bolt "go.etcd.io/bbolt"

	"github.com/layercommit/layercommit/internal/oracle"
)

var versions = []string{"1.6", "2.3"}

// ctrMounts parses `ctr snapshots mounts` (mount -t overlay overlay DIR
// -o ...,upperdir=U,lowerdir=L1:L2) into upper, work and lowers.
func ctrMounts(t *testing.T, c *oracle.Containerd, key string) (upper, work string, lowers []string) {
	t.Helper()
	out := c.Run(t, "snapshots", "mounts", "/mnt-unused", key)
	m := regexp.MustCompile(`-o (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("ctr snapshots mounts %s: %q", key, out)
	}
	for _, opt := range strings.Split(m[1], ",") {
		k, v, _ := strings.Cut(opt, "=")
		switch k {
		case "upperdir":
			upper = v
		case "workdir":
			work = v
		case "lowerdir":
			lowers = strings.Split(v, ":")
		}
	}
	return upper, work, lowers
}

// TestReadLive reads a container's snapshot, its image and its records
// while the containerd that holds both dbs runs, and compares with what
// ctr says.
func TestReadLive(t *testing.T) {
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			c := oracle.StartContainerd(t, v, "")
			c.Run(t, "containers", "create", c.Base, "lc-ctr")
			s, err := Open(c.Root)
			if err != nil {
				t.Fatal(err)
			}
			// The daemon holds meta.db: a read-only open must time out,
			// so what follows reads through the copy.
			if db, err := bolt.Open(s.metaDB(), 0, &bolt.Options{ReadOnly: true, Timeout: lockProbe}); err == nil {
				db.Close()
				t.Fatal("meta.db is not locked by the running containerd")
			}
			ctr, err := s.Container(c.Namespace, "lc-ctr")
			if err != nil {
				t.Fatal(err)
			}
			if ctr.Image != c.Base || ctr.SnapshotKey != "lc-ctr" || ctr.Snapshotter != "overlayfs" {
				t.Fatalf("container record %+v", ctr)
			}
			sn, err := s.Snapshot(c.Namespace, ctr.SnapshotKey)
			if err != nil {
				t.Fatal(err)
			}
			upper, work, lowers := ctrMounts(t, c, "lc-ctr")
			if sn.Kind != KindActive || sn.UpperDir != upper || sn.WorkDir != work || strings.Join(sn.Lowers, ":") != strings.Join(lowers, ":") {
				t.Fatalf("snapshot %+v\nctr: upper %s work %s lowers %v", sn, upper, work, lowers)
			}
			parent, err := s.Snapshot(c.Namespace, sn.Parent)
			if err != nil {
				t.Fatal(err)
			}
			if parent.Kind != KindCommitted || parent.UpperDir != sn.Lowers[0] || len(parent.Lowers) != len(sn.Lowers)-1 {
				t.Fatalf("parent %+v of %+v", parent, sn)
			}
			img, err := s.Image(c.Namespace, c.Base)
			if err != nil {
				t.Fatal(err)
			}
			ls := c.Run(t, "images", "ls")
			if !strings.Contains(ls, img.Target.Digest.String()) || !strings.Contains(ls, string(img.Target.MediaType)) {
				t.Fatalf("image record %+v; ctr images ls:\n%s", img, ls)
			}
			t.Logf("image %+v", img)
			vi, err := s.V1Image(c.Namespace, c.Base, v1.Platform{OS: "linux", Architecture: "amd64"})
			if err != nil {
				t.Fatal(err)
			}
			layers, err := vi.Layers()
			if err != nil {
				t.Fatal(err)
			}
			if len(layers) != len(sn.Lowers) {
				t.Fatalf("%d layers, %d lowers", len(layers), len(sn.Lowers))
			}
			for _, l := range layers {
				r, err := l.Compressed()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadAll(r); err != nil {
					t.Fatalf("reading layer: %v", err)
				}
				r.Close()
			}
			dumpLabels(t, s, c.Namespace)
			view(s.metaDB(), func(tx *bolt.Tx) error {
				dv, _ := binary.Varint(tx.Bucket(keyV1).Get(keyVersion))
				// The one schema difference between the two: 2.x's
				// migration 4 (sandboxes), in buckets we do not read.
				if want := map[string]int64{"1.6": 3, "2.3": 4}[v]; dv != want {
					t.Errorf("containerd %s: meta.db version %d, want %d", v, dv, want)
				}
				return nil
			})
		})
	}
}

// dumpLabels logs the content labels of ns, to compare with what we write.
func dumpLabels(t *testing.T, s *Store, ns string) {
	view(s.metaDB(), func(tx *bolt.Tx) error {
		b := bucket(tx, keyV1, []byte(ns), keyContent, keyBlob)
		return b.ForEachBucket(func(k []byte) error {
			t.Logf("content %s %v", k, readLabels(b.Bucket(k)))
			return nil
		})
	})
}

// TestBadInput: each bad input is one error naming the thing, never a
// hang, with a live daemon holding the dbs.
func TestBadInput(t *testing.T) {
	c := oracle.StartContainerd(t, "2.3", "")
	c.Run(t, "containers", "create", c.Base, "lc-ctr")
	// A container of another namespace, and a snapshot whose directory
	// is then removed.
	c.Run(t, "namespaces", "create", "other")
	if _, stderr, err := c.Try("snapshots", "prepare", "lc-gone", ""); err != nil {
		t.Fatalf("ctr snapshots prepare: %v %s", err, stderr)
	}
	s, err := Open(c.Root)
	if err != nil {
		t.Fatal(err)
	}
	gone, err := s.Snapshot(c.Namespace, "lc-gone")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Dir(gone.UpperDir)); err != nil {
		t.Fatal(err)
	}
	corrupt := t.TempDir()
	os.MkdirAll(filepath.Join(corrupt, "io.containerd.metadata.v1.bolt"), 0o755)
	raw, err := os.ReadFile(s.metaDB())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 8192; i++ { // both meta pages
		raw[i] ^= 0x5a
	}
	os.WriteFile(filepath.Join(corrupt, "io.containerd.metadata.v1.bolt", "meta.db"), raw, 0o644)
	// Sound meta pages over garbage pages: bbolt panics on those, which
	// must come out as ErrCorrupt too.
	garbage := t.TempDir()
	os.MkdirAll(filepath.Join(garbage, "io.containerd.metadata.v1.bolt"), 0o755)
	raw, _ = os.ReadFile(s.metaDB())
	for i := 8192; i < len(raw); i++ {
		raw[i] = byte(i*7 + 3)
	}
	os.WriteFile(filepath.Join(garbage, "io.containerd.metadata.v1.bolt", "meta.db"), raw, 0o644)
	gs, err := Open(garbage)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := Open(corrupt)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		do   func() error
		want error
		says string
	}{
		{"key in no namespace", func() error { _, err := s.Snapshot(c.Namespace, "nosuchkey"); return err }, ErrNotFound, `"nosuchkey"`},
		{"container in no namespace", func() error { _, err := s.Container(c.Namespace, "nosuch"); return err }, ErrNotFound, `"nosuch"`},
		{"namespace missing", func() error { _, err := s.Snapshot("nons", "lc-ctr"); return err }, ErrNotFound, `"nons"`},
		{"foreign namespace", func() error { _, err := s.Container("other", "lc-ctr"); return err }, ErrForeignNamespace, "k8s.io"},
		{"snapshot dir gone", func() error { _, err := s.Snapshot(c.Namespace, "lc-gone"); return err }, ErrSnapshotGone, gone.UpperDir},
		{"corrupt db", func() error { _, err := cs.Image("k8s.io", c.Base); return err }, ErrCorrupt, "meta.db"},
		{"garbage pages", func() error { _, err := gs.Image("k8s.io", c.Base); return err }, ErrCorrupt, "meta.db"},
		{"not a root", func() error { _, err := Open(t.TempDir()); return err }, ErrLayout, "meta.db"},
		{"write while running", func() error {
			img, err := s.V1Image(c.Namespace, c.Base, v1.Platform{OS: "linux", Architecture: "amd64"})
			if err != nil {
				return err
			}
			_, err = s.WriteImage(img, WriteOptions{Namespace: c.Namespace, Names: []string{"docker.io/library/x:1"}})
			return err
		}, ErrRunning, "meta.db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, want %v saying %s on one line", err, tc.want, tc.says)
			}
			t.Log(err)
		})
	}
}

func execOut(bin string, args ...string) (string, error) {
	out, err := exec.Command(bin, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestReadWhileWriting reads meta.db through copies while the live
// containerd commits to it as fast as ctr can: every read is a
// consistent view or ErrLocked, never a corrupt one and never a hang.
func TestReadWhileWriting(t *testing.T) {
	c := oracle.StartContainerd(t, "2.3", "")
	s, err := Open(c.Root)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		n := 0
		for ; ; n++ {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			c.Try("images", "tag", "--force", c.Base, "docker.io/library/lc-churn:"+strconv.Itoa(n%5))
		}
	}()
	ok, locked := 0, 0
	for i := 0; i < 200; i++ {
		imgs, err := s.Images(c.Namespace)
		switch {
		case err == nil:
			ok++
			for _, img := range imgs {
				if img.Target.Digest.Hex == "" {
					t.Fatalf("read %+v", img)
				}
			}
		case errors.Is(err, ErrLocked):
			locked++
		default:
			close(stop)
			<-done
			t.Fatalf("read %d: %v", i, err)
		}
	}
	close(stop)
	writes := <-done
	t.Logf("%d consistent reads, %d refused as locked, during %d commits by ctr", ok, locked, writes)
	if writes == 0 {
		t.Fatal("ctr committed nothing while we read")
	}
}
