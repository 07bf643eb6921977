package export

import (
	"context"
	"errors"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/image"
)

func init() { register(scratch{}) }

// scratch is the empty image. Commit replaces it by an empty image with
// the media types the destination and compression call for.
type scratch struct{}

func (scratch) Name() string { return "scratch" }

func (scratch) Open(_ context.Context, rest string, _ *Options) (v1.Image, error) {
	if rest != "" {
		return nil, errors.New("scratch takes no name")
	}
	return image.Scratch(false), nil
}

func (scratch) Destination(context.Context, string, *Options) (Destination, error) {
	return nil, errors.New("scratch is not a destination")
}
