package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/layercommit/layercommit/internal/atomicfile"
	"github.com/layercommit/layercommit/unpack"
)

func init() {
	register(rootfs{})
	register(rootfsTar{})
}

// rootfs is an image's final file system written out as a directory:
// rootfs:DIR, what BuildKit's --output type=local,dest=DIR writes.
// Destination only. DIR must not exist or be empty; it is filled under a
// temp name beside it and renamed into place when complete.
type rootfs struct{}

func (rootfs) Name() string { return "rootfs" }

func (rootfs) Open(context.Context, string, *Options) (v1.Image, error) {
	return nil, errors.New("rootfs: is a destination only")
}

func (rootfs) Destination(_ context.Context, dir string, _ *Options) (Destination, error) {
	if dir == "" {
		return nil, errors.New("rootfs: wants a directory, as in rootfs:DIR")
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("rootfs: %s exists and is not empty", dir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	parent := filepath.Dir(filepath.Clean(dir))
	if fi, err := os.Stat(parent); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("rootfs: no directory for %s", dir)
	}
	blobs, err := newTempBlobs(parent, atomicfile.TempPrefix+filepath.Base(dir)+"-blobs-", true)
	if err != nil {
		return nil, err
	}
	return &rootfsDest{dir: filepath.Clean(dir), tempBlobs: blobs}, nil
}

type rootfsDest struct {
	dir string
	tempBlobs
}

func (d *rootfsDest) PrefersOCI() bool { return true }

// Write unpacks the flattened file system of img (mutate.Extract: each
// path as the top layer has it, whiteouts applied) with package unpack's
// hardened rules into a temp dir, then renames it to the destination.
func (d *rootfsDest) Write(ctx context.Context, img v1.Image) error {
	tmp, err := os.MkdirTemp(filepath.Dir(d.dir), atomicfile.TempPrefix+filepath.Base(d.dir)+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	rc := mutate.Extract(img)
	_, err = unpack.Apply(ctx, tmp, rc)
	if err == nil {
		_, err = io.Copy(io.Discard, rc)
	}
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing the file system to %s: %w", d.dir, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	os.Remove(d.dir) // an empty dir only; a non-empty one fails the rename
	if err := os.Rename(tmp, d.dir); err != nil {
		return fmt.Errorf("writing the file system to %s: %w", d.dir, err)
	}
	return atomicfile.SyncDir(filepath.Dir(d.dir))
}

// rootfsTar is an image's final file system as one tarball:
// rootfs-tar:FILE, what BuildKit's --output type=tar,dest=FILE writes.
// Destination only; the file is written under a temp name and renamed.
type rootfsTar struct{}

func (rootfsTar) Name() string { return "rootfs-tar" }

func (rootfsTar) Open(context.Context, string, *Options) (v1.Image, error) {
	return nil, errors.New("rootfs-tar: is a destination only")
}

func (rootfsTar) Destination(_ context.Context, file string, _ *Options) (Destination, error) {
	if file == "" {
		return nil, errors.New("rootfs-tar: wants a file, as in rootfs-tar:FILE")
	}
	dir := filepath.Dir(file)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("rootfs-tar: no directory for %s", file)
	}
	blobs, err := newTempBlobs(dir, archiveTempPrefix(file)+"blobs-", true)
	if err != nil {
		return nil, err
	}
	return &rootfsTarDest{file: file, tempBlobs: blobs}, nil
}

type rootfsTarDest struct {
	file string
	tempBlobs
}

func (d *rootfsTarDest) PrefersOCI() bool { return true }

func (d *rootfsTarDest) Write(ctx context.Context, img v1.Image) error {
	f, err := atomicfile.Create(d.file, 0o644)
	if err != nil {
		return err
	}
	defer f.Abort()
	rc := mutate.Extract(img)
	_, err = io.Copy(f, rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", d.file, err)
	}
	return f.Commit()
}
