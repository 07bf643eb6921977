package commit

import (
	"context"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/export"
	"github.com/layercommit/layercommit/image"
	"github.com/layercommit/layercommit/layer"
)

// CommitRequest is one `layercommit commit`.
type CommitRequest struct {
	// From is the base image reference ("scratch" for none).
	From string
	// Changes is the change set to commit (an upper dir).
	Changes diff.Source
	// To is the destination reference.
	To string
	// Image options: created time, author, message, --change lines...
	Image []image.Option
	// Squash makes one layer of the whole merged file system: the base's
	// layers with Upper (an overlay upper dir) on top, no whiteouts; the
	// base's history collapses into the new entry (image.WithSquash).
	// Changes is then not read, and Exclude applies to the merged file
	// system: an excluded path is gone from the image. The base's layers are unpacked into the
	// state dir at StateDir (statedir.Dir.UnpackLayer, each stream checked
	// against its diffID), or reused from there, before the destination
	// is touched: a base that cannot be read leaves nothing behind.
	Squash   bool
	Upper    string
	StateDir string
	// MaxLayerSize, when above zero, splits the change set into layers of
	// at most that many uncompressed tar bytes by path order (diff.Split).
	MaxLayerSize int64
	Output
}

// Output is how a commit writes its layer and reaches its destination;
// CommitRequest and ContainerRequest share it.
type Output struct {
	// Compat picks whose tar bytes to write (compat.Default if zero).
	Compat compat.Profile
	// Compression and Level pick the compressor (gzip at its default
	// level if zero and nil).
	Compression layer.Compression
	Level       *int
	// Options for opening the base and the destination.
	Options []export.Option
	// Counters receive progress; may be nil.
	Counters *layer.Counters
	// Diff holds further options for the layer tar (xattrs, sparse
	// files), after the profile.
	Diff []diff.Option
	// Exclude are .dockerignore patterns of paths left out of the layer
	// (diff.Exclude): excluding a path the container deleted drops its
	// whiteout, so the base's version shows again.
	Exclude []string
	// SourceDateEpoch, when set, is the created time of the image and
	// its new history entry (whatever the Image options say) and the
	// latest mtime written in the layer: later ones, whiteouts' included,
	// are clamped to it, earlier ones kept (diff.WithMtimeClamp), as
	// build --source-date-epoch does.
	SourceDateEpoch *int64
}

// setDefaults fills in the profile and compressor left zero.
func (o *Output) setDefaults() {
	if o.Compat.Name == "" {
		o.Compat = compat.Default
	}
	if o.Compression == "" {
		o.Compression = layer.Gzip
	}
}

// diffOptions are the tar options of every layer the output writes.
func (o *Output) diffOptions() []diff.Option {
	opts := append([]diff.Option{diff.WithCompat(o.Compat)}, o.Diff...)
	if o.SourceDateEpoch != nil {
		opts = append(opts, diff.WithMtimeClamp(*o.SourceDateEpoch))
	}
	return opts
}

// created is the SourceDateEpoch as a time; zero when unset.
func (o *Output) created() time.Time {
	if o.SourceDateEpoch == nil {
		return time.Time{}
	}
	return time.Unix(*o.SourceDateEpoch, 0).UTC()
}

// exclude wraps src in the Exclude patterns; it fails on a bad pattern.
func (o *Output) exclude(src diff.Source) (diff.Source, error) {
	if len(o.Exclude) == 0 {
		return src, nil
	}
	return diff.Exclude(src, o.Exclude)
}

// writeLayer writes src's layer blob into dest's blob dir.
func (o *Output) writeLayer(ctx context.Context, dest export.Destination, src diff.Source, docker bool) (*layer.Layer, error) {
	return layer.Write(ctx, dest.BlobDir(), src,
		layer.WithCompression(o.Compression, o.Level),
		layer.WithDockerMediaTypes(docker),
		layer.WithDiffOptions(o.diffOptions()...),
		layer.WithCounters(o.Counters))
}

// writeLayers writes src as one layer, or as the parts diff.Split cuts
// it into when max is above zero, bottom first. Empty layers are removed
// and left out; on error every blob written is removed.
func (o *Output) writeLayers(ctx context.Context, dest export.Destination, src diff.Source, docker bool, max int64) ([]*layer.Layer, error) {
	parts := []diff.Source{src}
	if max > 0 {
		var err error
		if parts, err = diff.Split(ctx, src, max, o.diffOptions()...); err != nil {
			return nil, err
		}
	}
	var out []*layer.Layer
	for i, p := range parts {
		l, err := o.writeLayer(ctx, dest, p, docker)
		if err != nil {
			removeLayers(out)
			if len(parts) > 1 {
				return nil, fmt.Errorf("layer %d of %d: %w", i+1, len(parts), err)
			}
			return nil, err
		}
		if l.Empty() {
			if err := l.Remove(); err != nil {
				removeLayers(out)
				return nil, err
			}
			continue
		}
		out = append(out, l)
	}
	return out, nil
}

// removeLayers removes the blobs of ls that this commit created.
func removeLayers(ls []*layer.Layer) {
	for _, l := range ls {
		l.Remove()
	}
}

// Commit writes the change set as a layer, puts it on the base image by
// docker commit's rules and writes the result to the destination. It
// returns the new image ID (the digest of its config). On error the
// destination is left as it was and the new layer blob is removed.
func Commit(ctx context.Context, r CommitRequest) (v1.Hash, error) {
	r.setDefaults()
	opts := append([]export.Option{export.WithCounters(r.Counters)}, r.Options...)
	t, _, err := export.Parse(r.From)
	if err != nil {
		return v1.Hash{}, err
	}
	if r.MaxLayerSize < 0 {
		return v1.Hash{}, fmt.Errorf("bad maximum layer size %d", r.MaxLayerSize)
	}
	src := r.Changes
	if !r.Squash {
		// A bad pattern fails here, before anything is read or written.
		if src, err = r.exclude(src); err != nil {
			return v1.Hash{}, err
		}
	} else if _, err := r.exclude(nil); err != nil {
		return v1.Hash{}, err
	}
	// The base is read before the destination is touched, so that a bad
	// base leaves nothing behind.
	var base v1.Image
	var docker bool
	isScratch := t.Name() == "scratch"
	if !isScratch {
		if base, err = export.Open(ctx, r.From, opts...); err != nil {
			return v1.Hash{}, err
		}
		if docker, err = image.DockerMediaTypes(base); err != nil {
			return v1.Hash{}, fmt.Errorf("reading %s: %w", r.From, err)
		}
	}
	if r.Squash {
		sq, release, err := squashSource(ctx, base, r.Upper, r.StateDir)
		if err != nil {
			return v1.Hash{}, fmt.Errorf("reading %s: %w", r.From, err)
		}
		defer release()
		if src, err = r.exclude(sq); err != nil {
			return v1.Hash{}, err
		}
	}
	dest, err := export.NewDestination(ctx, r.To, opts...)
	if err != nil {
		return v1.Hash{}, err
	}
	defer dest.Close()
	if isScratch {
		docker = !dest.PrefersOCI() && !r.Compression.NeedsOCI()
		base = image.Scratch(!docker)
	}

	ls, err := r.writeLayers(ctx, dest, src, docker, r.MaxLayerSize)
	if err != nil {
		return v1.Hash{}, err
	}
	top := make([]v1.Layer, len(ls))
	for i, l := range ls {
		top[i] = l
	}
	iopts := append([]image.Option{image.WithDockerVersion(r.Compat.DockerVersion)}, r.Image...)
	if t := r.created(); !t.IsZero() {
		iopts = append(iopts, image.WithCreated(t))
	}
	if r.Squash {
		iopts = append(iopts, image.WithSquash())
	}
	img, err := image.CommitLayers(base, top, iopts...)
	if err != nil {
		removeLayers(ls)
		return v1.Hash{}, err
	}
	if err := dest.Write(ctx, img); err != nil {
		removeLayers(ls)
		return v1.Hash{}, fmt.Errorf("writing %s: %w", r.To, err)
	}
	id, err := img.ConfigName()
	if err != nil {
		return v1.Hash{}, err
	}
	return id, nil
}
