package export

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/internal/atomicfile"
)

func init() { register(ociArchive{}) }

// ociArchive is an OCI image layout in a tarball: oci-archive:FILE[:TAG]
// (skopeo's name; what BuildKit's --output type=oci,dest=FILE writes).
// Destination only: the layout is written with oci: into a temp dir
// beside FILE, then tarred (sorted names, zero times, root-owned) under a
// temp name and renamed.
type ociArchive struct{}

func (ociArchive) Name() string { return "oci-archive" }

func (ociArchive) Open(context.Context, string, *Options) (v1.Image, error) {
	return nil, errors.New("oci-archive: is a destination only (unpack it and use oci:DIR)")
}

func (ociArchive) Destination(ctx context.Context, rest string, o *Options) (Destination, error) {
	file, tag, _ := strings.Cut(rest, ":")
	if file == "" {
		return nil, errors.New("oci-archive: wants a file, as in oci-archive:FILE[:TAG]")
	}
	dir := filepath.Dir(file)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("oci-archive: no directory for %s", file)
	}
	tmp, err := newTempBlobs(dir, archiveTempPrefix(file)+"layout-", true)
	if err != nil {
		return nil, err
	}
	ref := filepath.Join(tmp.BlobDir(), "layout")
	if tag != "" {
		ref += ":" + tag
	}
	inner, err := oci{}.Destination(ctx, ref, o)
	if err != nil {
		tmp.Close()
		return nil, err
	}
	return &ociArchiveDest{file: file, layout: filepath.Join(tmp.BlobDir(), "layout"), inner: inner, tmp: tmp}, nil
}

type ociArchiveDest struct {
	file, layout string
	inner        Destination
	tmp          tempBlobs
}

func (d *ociArchiveDest) BlobDir() string  { return d.inner.BlobDir() }
func (d *ociArchiveDest) PrefersOCI() bool { return true }

func (d *ociArchiveDest) Close() error {
	err := d.inner.Close()
	if cerr := d.tmp.Close(); err == nil {
		err = cerr
	}
	return err
}

func (d *ociArchiveDest) Write(ctx context.Context, img v1.Image) error {
	if err := d.inner.Write(ctx, img); err != nil {
		return err
	}
	f, err := atomicfile.Create(d.file, 0o644)
	if err != nil {
		return err
	}
	defer f.Abort()
	if err := tarDir(f, d.layout); err != nil {
		return fmt.Errorf("writing %s: %w", d.file, err)
	}
	return f.Commit()
}

// tarDir writes the regular files and dirs under root (names relative to
// it) as a tar stream, in sorted order with fixed owners and times.
func tarDir(w io.Writer, root string) error {
	var paths []string
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root && !strings.HasPrefix(e.Name(), atomicfile.TempPrefix) && !strings.HasPrefix(e.Name(), ".") {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	tw := tar.NewWriter(w)
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		h := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, Format: tar.FormatPAX}
		switch {
		case fi.IsDir():
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
		case fi.Mode().IsRegular():
			h.Typeflag, h.Size = tar.TypeReg, fi.Size()
		default:
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return err
			}
		}
	}
	return tw.Close()
}
