package commit

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/export"
)

// Copy reads the image src names and writes it to dest unchanged (same
// config, so the same image ID). It returns the image ID.
func Copy(ctx context.Context, src, dest string, opts ...export.Option) (v1.Hash, error) {
	img, err := export.Open(ctx, src, opts...)
	if err != nil {
		return v1.Hash{}, err
	}
	d, err := export.NewDestination(ctx, dest, opts...)
	if err != nil {
		return v1.Hash{}, err
	}
	defer d.Close()
	if err := d.Write(ctx, img); err != nil {
		return v1.Hash{}, fmt.Errorf("writing %s: %w", dest, err)
	}
	return img.ConfigName()
}
