package commit

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/builder"
	"github.com/layercommit/layercommit/export"
)

// BuildRequest is one `layercommit build`: the builder's options and
// where the result goes.
type BuildRequest struct {
	Build builder.Options
	// To is the destination reference.
	To string
	// Options open the bases and the destination.
	Options []export.Option
}

// Build opens the destination (so that a bad one fails before any step
// runs), builds the Dockerfile with bases resolved by Resolver, and
// writes the image. It returns the image ID. On error the destination is
// left as it was.
func Build(ctx context.Context, r BuildRequest) (v1.Hash, error) {
	dest, err := export.NewDestination(ctx, r.To, r.Options...)
	if err != nil {
		return v1.Hash{}, err
	}
	defer dest.Close()
	o := r.Build
	o.Resolve = Resolver(r.Options...)
	o.OCIMediaTypes = dest.PrefersOCI()
	res, err := builder.Build(ctx, o)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := dest.Write(ctx, res.Image); err != nil {
		return v1.Hash{}, fmt.Errorf("writing %s: %w", r.To, err)
	}
	return res.ID, nil
}

// Resolver opens what FROM and COPY --from name: a transport reference
// (../shared/CLI.md) as it is, and a plain name pulled from its registry,
// as docker build resolves it.
func Resolver(opts ...export.Option) builder.Resolver {
	return func(ctx context.Context, ref string) (v1.Image, error) {
		target := ref
		if _, _, err := export.Parse(ref); err != nil {
			target = "docker://" + ref
		}
		return export.Open(ctx, target, opts...)
	}
}
