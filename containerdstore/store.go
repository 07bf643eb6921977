package containerdstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	bolt "go.etcd.io/bbolt"
)

// Errors callers may test for.
var (
	// ErrNotFound: no such image, container, snapshot or namespace.
	ErrNotFound = errors.New("not found")
	// ErrForeignNamespace: the key exists, but in another namespace.
	ErrForeignNamespace = errors.New("in another namespace")
	// ErrSnapshotGone: the records name a snapshot whose directory is
	// missing.
	ErrSnapshotGone = errors.New("snapshot directory gone")
	// ErrLocked: a db held by a running containerd could not be copied
	// consistently.
	ErrLocked = errors.New("db locked and unreadable")
	// ErrRunning: a write was refused because a daemon holds meta.db.
	ErrRunning = errors.New("containerd is running")
	// ErrCorrupt: a db file or record does not say what it must.
	ErrCorrupt = errors.New("corrupt containerd store")
	// ErrLayout: the directory is not a containerd root.
	ErrLayout = errors.New("not a containerd root")
	// ErrDigest: a blob's content does not match its digest or size.
	ErrDigest = errors.New("blob digest mismatch")
)

// Namespaces of the two users this package serves.
const (
	// NamespaceDocker is the one Docker 29's containerd image store uses.
	NamespaceDocker = "moby"
	// NamespaceKubernetes is the one containerd's CRI plugin uses.
	NamespaceKubernetes = "k8s.io"
)

// DefaultRoot is a system containerd's --root.
const DefaultRoot = "/var/lib/containerd"

// DockerRoot is the root of the containerd that a dockerd on dataRoot
// supervises (moby's daemon/command: <data-root>/containerd/daemon).
func DockerRoot(dataRoot string) string { return filepath.Join(dataRoot, "containerd", "daemon") }

// Bucket and key names of containerd's metadata schema v1 (containerd
// core/metadata/buckets.go) and of the snapshotter's storage
// (core/snapshots/storage/bolt.go). containerd 1.6 and 2.3 write the same
// names; 2.x adds buckets (sandboxes, ...) this package does not read.
var (
	keyV1          = []byte("v1")
	keyImages      = []byte("images")
	keyContainers  = []byte("containers")
	keySnapshots   = []byte("snapshots")
	keyContent     = []byte("content")
	keyBlob        = []byte("blob")
	keyLabels      = []byte("labels")
	keyTarget      = []byte("target")
	keyDigest      = []byte("digest")
	keyMediaType   = []byte("mediatype")
	keySize        = []byte("size")
	keyCreatedAt   = []byte("createdat")
	keyUpdatedAt   = []byte("updatedat")
	keyName        = []byte("name")
	keyParent      = []byte("parent")
	keyChildren    = []byte("children")
	keyImage       = []byte("image")
	keySnapshotter = []byte("snapshotter")
	keySnapshotKey = []byte("snapshotKey")
	keySpec        = []byte("spec")
	keyID          = []byte("id")
	keyKind        = []byte("kind")
	keyVersion     = []byte("version")
)

// Store is a containerd root on disk.
type Store struct {
	// Root is containerd's --root.
	Root string
	// Snapshotter names the snapshotter Snapshot resolves through
	// ("overlayfs" after Open).
	Snapshotter string
}

// Open checks that root holds containerd's metadata db and returns the
// store. Nothing is kept open.
func Open(root string) (*Store, error) {
	s := &Store{Root: root, Snapshotter: "overlayfs"}
	if fi, err := os.Stat(s.metaDB()); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s has no io.containerd.metadata.v1.bolt/meta.db", ErrLayout, root)
	}
	return s, nil
}

func (s *Store) metaDB() string {
	return filepath.Join(s.Root, "io.containerd.metadata.v1.bolt", "meta.db")
}

// ContentDir is the local content store's root.
func (s *Store) ContentDir() string {
	return filepath.Join(s.Root, "io.containerd.content.v1.content")
}

// SnapshotterDir is the overlayfs snapshotter's root.
func (s *Store) SnapshotterDir() string {
	return filepath.Join(s.Root, "io.containerd.snapshotter.v1."+s.Snapshotter)
}

// bucket walks nested buckets from the tx; nil when one is missing.
func bucket(tx *bolt.Tx, keys ...[]byte) *bolt.Bucket {
	b := tx.Bucket(keys[0])
	for _, k := range keys[1:] {
		if b == nil {
			return nil
		}
		b = b.Bucket(k)
	}
	return b
}

// namespaces lists the namespaces in meta.db.
func namespaces(tx *bolt.Tx) []string {
	var ns []string
	if v1b := tx.Bucket(keyV1); v1b != nil {
		v1b.ForEachBucket(func(k []byte) error {
			ns = append(ns, string(k))
			return nil
		})
	}
	sort.Strings(ns)
	return ns
}

// namespaceBucket returns v1/<ns>, or an error naming the namespaces
// there are.
func namespaceBucket(tx *bolt.Tx, root, ns string) (*bolt.Bucket, error) {
	if b := bucket(tx, keyV1, []byte(ns)); b != nil {
		return b, nil
	}
	return nil, fmt.Errorf("%w: namespace %q in %s (it has: %s)", ErrNotFound, ns, root, strings.Join(namespaces(tx), ", "))
}

// foreign returns the other namespaces in which find finds something.
func foreign(tx *bolt.Tx, ns string, find func(nsb *bolt.Bucket) bool) []string {
	var in []string
	for _, other := range namespaces(tx) {
		if other == ns {
			continue
		}
		if b := bucket(tx, keyV1, []byte(other)); b != nil && find(b) {
			in = append(in, other)
		}
	}
	return in
}

// notFound is the error for name missing from ns: ErrForeignNamespace when
// another namespace has it.
func notFound(tx *bolt.Tx, what, name, ns string, find func(nsb *bolt.Bucket) bool) error {
	if in := foreign(tx, ns, find); len(in) > 0 {
		return fmt.Errorf("%s %q is in namespace %s, not %s: %w", what, name, strings.Join(in, ", "), ns, ErrForeignNamespace)
	}
	return fmt.Errorf("%w: %s %q in namespace %s", ErrNotFound, what, name, ns)
}

func readLabels(b *bolt.Bucket) map[string]string {
	lb := b.Bucket(keyLabels)
	if lb == nil {
		return nil
	}
	m := map[string]string{}
	lb.ForEach(func(k, v []byte) error {
		if v != nil {
			m[string(k)] = string(v)
		}
		return nil
	})
	return m
}

func readTime(b *bolt.Bucket, key []byte) (time.Time, error) {
	var t time.Time
	if v := b.Get(key); v != nil {
		if err := t.UnmarshalBinary(v); err != nil {
			return t, fmt.Errorf("%w: %s: %w", ErrCorrupt, key, err)
		}
	}
	return t, nil
}

// Image is an image record.
type Image struct {
	Name   string
	Target v1.Descriptor
	Labels map[string]string
	// Created and Updated are the record's times.
	Created, Updated time.Time
}

// Image returns the image record name (a full name, e.g.
// docker.io/library/busybox:latest or moby-dangling@sha256:...) in ns.
func (s *Store) Image(ns, name string) (Image, error) {
	img := Image{Name: name}
	err := view(s.metaDB(), func(tx *bolt.Tx) error {
		nsb, err := namespaceBucket(tx, s.Root, ns)
		if err != nil {
			return err
		}
		find := func(b *bolt.Bucket) bool { return bucket2(b, keyImages, []byte(name)) != nil }
		ib := bucket2(nsb, keyImages, []byte(name))
		if ib == nil {
			return notFound(tx, "image", name, ns, find)
		}
		return readImage(ib, &img)
	})
	if err != nil {
		return Image{}, fmt.Errorf("reading image %s in %s: %w", name, s.Root, err)
	}
	return img, nil
}

// Images lists the image records of ns, sorted by name.
func (s *Store) Images(ns string) ([]Image, error) {
	var imgs []Image
	err := view(s.metaDB(), func(tx *bolt.Tx) error {
		nsb, err := namespaceBucket(tx, s.Root, ns)
		if err != nil {
			return err
		}
		b := nsb.Bucket(keyImages)
		if b == nil {
			return nil
		}
		return b.ForEachBucket(func(k []byte) error {
			img := Image{Name: string(k)}
			if err := readImage(b.Bucket(k), &img); err != nil {
				return err
			}
			imgs = append(imgs, img)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("listing images of %s in %s: %w", ns, s.Root, err)
	}
	return imgs, nil
}

func bucket2(b *bolt.Bucket, keys ...[]byte) *bolt.Bucket {
	for _, k := range keys {
		if b == nil {
			return nil
		}
		b = b.Bucket(k)
	}
	return b
}

func readImage(ib *bolt.Bucket, img *Image) error {
	var err error
	if img.Created, err = readTime(ib, keyCreatedAt); err != nil {
		return err
	}
	if img.Updated, err = readTime(ib, keyUpdatedAt); err != nil {
		return err
	}
	img.Labels = readLabels(ib)
	tb := ib.Bucket(keyTarget)
	if tb == nil {
		return fmt.Errorf("%w: image %s has no target", ErrCorrupt, img.Name)
	}
	h, err := v1.NewHash(string(tb.Get(keyDigest)))
	if err != nil {
		return fmt.Errorf("%w: image %s target: %w", ErrCorrupt, img.Name, err)
	}
	size, n := binary.Varint(tb.Get(keySize))
	if n <= 0 || size < 0 {
		return fmt.Errorf("%w: image %s target size", ErrCorrupt, img.Name)
	}
	img.Target = v1.Descriptor{MediaType: types.MediaType(tb.Get(keyMediaType)), Digest: h, Size: size}
	return nil
}

// Container is a container record.
type Container struct {
	ID string
	// Image is the image's name; Snapshotter and SnapshotKey its rootfs.
	Image, Snapshotter, SnapshotKey string
	Labels                          map[string]string
	Created, Updated                time.Time
	// Args are the process arguments of its runtime spec (processArgs).
	Args []string
}

// Container returns the container record id in ns.
func (s *Store) Container(ns, id string) (Container, error) {
	c := Container{ID: id}
	err := view(s.metaDB(), func(tx *bolt.Tx) error {
		nsb, err := namespaceBucket(tx, s.Root, ns)
		if err != nil {
			return err
		}
		cb := bucket2(nsb, keyContainers, []byte(id))
		if cb == nil {
			return notFound(tx, "container", id, ns, func(b *bolt.Bucket) bool { return bucket2(b, keyContainers, []byte(id)) != nil })
		}
		c.Image = string(cb.Get(keyImage))
		c.Snapshotter = string(cb.Get(keySnapshotter))
		c.SnapshotKey = string(cb.Get(keySnapshotKey))
		c.Labels = readLabels(cb)
		if c.Created, err = readTime(cb, keyCreatedAt); err != nil {
			return err
		}
		if c.Updated, err = readTime(cb, keyUpdatedAt); err != nil {
			return err
		}
		c.Args, err = processArgs(cb.Get(keySpec))
		return err
	})
	if err != nil {
		return Container{}, fmt.Errorf("reading container %s in %s: %w", id, s.Root, err)
	}
	return c, nil
}

// Kind is a snapshot's kind as containerd numbers it
// (core/snapshots.Kind).
type Kind uint8

// The snapshot kinds.
const (
	KindUnknown Kind = iota
	KindView
	KindActive
	KindCommitted
)

func (k Kind) String() string {
	switch k {
	case KindView:
		return "View"
	case KindActive:
		return "Active"
	case KindCommitted:
		return "Committed"
	}
	return "Unknown"
}

// Snapshot is a snapshot resolved through the metadata db and the
// snapshotter's db.
type Snapshot struct {
	// Key is the snapshot's key in its namespace (a container ID, a
	// chain ID, <id>-init for Docker); Parent its parent's key.
	Key, Parent string
	Kind        Kind
	// ID is the snapshotter's id: the directory under snapshots/.
	ID string
	// UpperDir is snapshots/<id>/fs, WorkDir snapshots/<id>/work (only
	// for active snapshots).
	UpperDir, WorkDir string
	// Lowers are the parents' fs dirs, top (the parent) first.
	Lowers []string
	Labels map[string]string
}

// Snapshot returns the snapshot key of ns in s.Snapshotter, its
// directories resolved through the snapshotter's metadata.db. meta.db is
// read before metadata.db: containerd commits a new snapshot to the
// snapshotter's db before the metadata record that names it, and removes
// the record first, so a record read earlier names a backend snapshot
// that is still there.
func (s *Store) Snapshot(ns, key string) (Snapshot, error) {
	sn := Snapshot{Key: key}
	var backend string
	err := view(s.metaDB(), func(tx *bolt.Tx) error {
		nsb, err := namespaceBucket(tx, s.Root, ns)
		if err != nil {
			return err
		}
		path := [][]byte{keySnapshots, []byte(s.Snapshotter), []byte(key)}
		b := bucket2(nsb, path...)
		if b == nil {
			return notFound(tx, s.Snapshotter+" snapshot", key, ns, func(b *bolt.Bucket) bool { return bucket2(b, path...) != nil })
		}
		backend = string(b.Get(keyName))
		sn.Parent = string(b.Get(keyParent))
		sn.Labels = readLabels(b)
		if backend == "" {
			return fmt.Errorf("%w: snapshot %s has no backend name", ErrCorrupt, key)
		}
		return nil
	})
	if err != nil {
		return Snapshot{}, fmt.Errorf("reading snapshot %s in %s: %w", key, s.Root, err)
	}
	dir := s.SnapshotterDir()
	var ids []string
	err = view(filepath.Join(dir, "metadata.db"), func(tx *bolt.Tx) error {
		sb := bucket(tx, keyV1, keySnapshots)
		if sb == nil {
			return fmt.Errorf("%w: %s/metadata.db has no v1/snapshots", ErrCorrupt, dir)
		}
		name := backend
		for depth := 0; name != ""; depth++ {
			b := sb.Bucket([]byte(name))
			if b == nil {
				return fmt.Errorf("%w: snapshot %s (backend %s) not in %s/metadata.db", ErrCorrupt, key, name, dir)
			}
			if depth > 1000 {
				return fmt.Errorf("%w: snapshot %s: parent chain loops", ErrCorrupt, key)
			}
			id, n := binary.Uvarint(b.Get(keyID))
			if n <= 0 {
				return fmt.Errorf("%w: snapshot %s has no id", ErrCorrupt, name)
			}
			if depth == 0 {
				if k := b.Get(keyKind); len(k) == 1 {
					sn.Kind = Kind(k[0])
				}
			}
			ids = append(ids, strconv.FormatUint(id, 10))
			name = string(b.Get(keyParent))
		}
		return nil
	})
	if err != nil {
		return Snapshot{}, fmt.Errorf("reading snapshot %s in %s: %w", key, s.Root, err)
	}
	sn.ID = ids[0]
	sn.UpperDir = filepath.Join(dir, "snapshots", sn.ID, "fs")
	if sn.Kind == KindActive {
		sn.WorkDir = filepath.Join(dir, "snapshots", sn.ID, "work")
	}
	for _, id := range ids[1:] {
		sn.Lowers = append(sn.Lowers, filepath.Join(dir, "snapshots", id, "fs"))
	}
	for _, d := range append([]string{sn.UpperDir, sn.WorkDir}, sn.Lowers...) {
		if d == "" {
			continue
		}
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			return Snapshot{}, fmt.Errorf("snapshot %s in namespace %s: %w: %s", key, ns, ErrSnapshotGone, d)
		}
	}
	return sn, nil
}
