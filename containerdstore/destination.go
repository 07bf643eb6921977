package containerdstore

import (
	"context"
	"errors"
	"fmt"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Destination writes images into a namespace of the store (WriteImage),
// for the export and commit stages: new layer blobs wait in a temp dir
// under the store's root, on its file system, and are removed by Close.
type Destination struct {
	s *Store
	// Options are WriteImage's; a caller may add labels and blobs
	// before Write.
	Options WriteOptions
	blobDir string
	// Written is the manifest descriptor of the last image written.
	Written v1.Descriptor
}

// Destination returns a destination writing into ns under o's names
// and labels (o.Namespace is set to ns). It fails early, before any blob
// is made, when a daemon holds the store.
func (s *Store) Destination(ns string, o WriteOptions) (*Destination, error) {
	if err := s.checkNotRunning(); err != nil {
		return nil, err
	}
	o.Namespace = ns
	dir, err := os.MkdirTemp(s.Root, ".layercommit-")
	if err != nil {
		return nil, fmt.Errorf("making temp space in %s: %w", s.Root, err)
	}
	return &Destination{s: s, Options: o, blobDir: dir}, nil
}

// BlobDir is temp space under the store's root.
func (d *Destination) BlobDir() string { return d.blobDir }

// PrefersOCI: containerd and Docker's containerd store commit OCI images.
func (d *Destination) PrefersOCI() bool { return true }

// Write stores img under the destination's names.
func (d *Destination) Write(_ context.Context, img v1.Image) error {
	desc, err := d.s.WriteImage(img, d.Options)
	if err != nil {
		return err
	}
	d.Written = desc
	return nil
}

// Close removes the temp space; it is safe to call more than once.
func (d *Destination) Close() error { return os.RemoveAll(d.blobDir) }

// checkNotRunning fails with ErrRunning when a daemon holds meta.db's
// lock (the lock is taken and released at once: WriteImage takes it
// again for its own transaction).
func (s *Store) checkNotRunning() error {
	db, err := s.openForWrite()
	if err != nil {
		return err
	}
	return db.Close()
}

// openForWrite opens meta.db for writing, holding its lock: ErrRunning
// when a daemon holds it, ErrCorrupt when it is no bolt db.
func (s *Store) openForWrite() (*bolt.DB, error) {
	db, err := openDB(s.metaDB(), 0o644, &bolt.Options{Timeout: lockProbe})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, ErrCorrupt):
		return nil, err
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("%w: it holds %s; stop it (and the dockerd supervising it) before writing", ErrRunning, s.metaDB())
	}
	return nil, fmt.Errorf("%w: opening %s: %w", ErrCorrupt, s.metaDB(), err)
}
