package commit

import (
	"context"
	"fmt"

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

// writeLayer writes src's layer blob into dest's blob dir.
func (o *Output) writeLayer(ctx context.Context, dest export.Destination, src diff.Source, docker bool) (*layer.Layer, error) {
	return layer.Write(ctx, dest.BlobDir(), src,
		layer.WithCompression(o.Compression, o.Level),
		layer.WithDockerMediaTypes(docker),
		layer.WithDiffOptions(append([]diff.Option{diff.WithCompat(o.Compat)}, o.Diff...)...),
		layer.WithCounters(o.Counters))
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
	dest, err := export.NewDestination(ctx, r.To, opts...)
	if err != nil {
		return v1.Hash{}, err
	}
	defer dest.Close()
	if isScratch {
		docker = !dest.PrefersOCI() && !r.Compression.NeedsOCI()
		base = image.Scratch(!docker)
	}

	l, err := r.writeLayer(ctx, dest, r.Changes, docker)
	if err != nil {
		return v1.Hash{}, err
	}
	var top v1.Layer = l
	if l.Empty() {
		if err := l.Remove(); err != nil {
			return v1.Hash{}, err
		}
		top = nil
	}
	iopts := append([]image.Option{image.WithDockerVersion(r.Compat.DockerVersion)}, r.Image...)
	img, err := image.Commit(base, top, iopts...)
	if err != nil {
		l.Remove()
		return v1.Hash{}, err
	}
	if err := dest.Write(ctx, img); err != nil {
		l.Remove()
		return v1.Hash{}, fmt.Errorf("writing %s: %w", r.To, err)
	}
	id, err := img.ConfigName()
	if err != nil {
		return v1.Hash{}, err
	}
	return id, nil
}
