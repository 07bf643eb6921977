package export

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/layercommit/layercommit/internal/atomicfile"
	"github.com/layercommit/layercommit/internal/cleanup"
	"github.com/layercommit/layercommit/internal/crashpoint"
)

func init() { register(dockerArchive{}) }

// dockerArchive is a `docker save` tarball: docker-archive:FILE[:NAME[:TAG]].
// As a source without NAME the archive must hold one image; as a
// destination without NAME the image is written untagged.
type dockerArchive struct{}

func (dockerArchive) Name() string { return "docker-archive" }

func splitArchive(rest string) (string, *name.Tag, error) {
	file, ref, _ := strings.Cut(rest, ":")
	if file == "" {
		return "", nil, errors.New("docker-archive: wants a file, as in docker-archive:FILE[:NAME[:TAG]]")
	}
	if ref == "" {
		return file, nil, nil
	}
	t, err := name.NewTag(ref)
	if err != nil {
		return "", nil, fmt.Errorf("docker-archive: bad image name %q: %w", ref, err)
	}
	return file, &t, nil
}

func (dockerArchive) Open(_ context.Context, rest string, _ *Options) (v1.Image, error) {
	file, tag, err := splitArchive(rest)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(file); err != nil {
		return nil, err
	}
	img, err := tarball.ImageFromPath(file, tag)
	if err != nil {
		return nil, err
	}
	return check(img)
}

func (dockerArchive) Destination(_ context.Context, rest string, _ *Options) (Destination, error) {
	file, tag, err := splitArchive(rest)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(file)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("no directory for %s: %v", file, err)
	}
	// Temp names start with archiveTempPrefix, so that GCArchive finds
	// them; each is flocked while in use.
	blobs, err := newTempBlobs(dir, archiveTempPrefix(file)+"blobs-", true)
	if err != nil {
		return nil, fmt.Errorf("making temp space beside %s: %w", file, err)
	}
	return &archiveDest{file: file, tag: tag, tempBlobs: blobs}, nil
}

type archiveDest struct {
	file string
	tag  *name.Tag
	tempBlobs
}

func (d *archiveDest) PrefersOCI() bool { return false }

// Write writes the tarball under a temp name beside the file and renames
// it into place when complete.
func (d *archiveDest) Write(ctx context.Context, img v1.Image) error {
	var ref name.Reference
	if d.tag != nil {
		ref = *d.tag
	} else {
		// A digest reference gives the image no RepoTags: docker load
		// loads it untagged.
		id, err := img.ConfigName()
		if err != nil {
			return err
		}
		if ref, err = name.NewDigest("untagged@" + id.String()); err != nil {
			return err
		}
	}
	f, err := atomicfile.Create(d.file, 0o644)
	if err != nil {
		return err
	}
	defer f.Abort()
	hold, err := holdEntry(f.Name())
	if err != nil {
		return err
	}
	defer hold.Unlock()
	if err := tarball.Write(ref, img, f); err != nil {
		return fmt.Errorf("writing %s: %w", d.file, err)
	}
	crashpoint.At("archive-temp-written")
	if err := f.Commit(); err != nil {
		return err
	}
	crashpoint.At("archive-renamed")
	return nil
}

// archiveTempPrefix starts the names of the temp files and dirs a write of
// file makes beside it: atomicfile's temp file of the tarball and the
// blob space of Destination.
func archiveTempPrefix(file string) string {
	return atomicfile.TempPrefix + filepath.Base(file) + "-"
}

// GCArchive removes the temp files and dirs that writes of the
// docker-archive file left beside it, except those a running writer
// holds (each is flocked shared while in use): those are reported as
// kept. The archive itself is never touched.
func GCArchive(file string, r cleanup.Report) error {
	return r.RemoveUnheldTemps(filepath.Dir(file), archiveTempPrefix(file))
}
