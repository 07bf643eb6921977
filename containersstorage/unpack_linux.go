package containersstorage

import (
	"context"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/internal/tarsplit"
	"github.com/layercommit/layercommit/internal/userns"
	"github.com/layercommit/layercommit/unpack"
)

// unpackLayer unpacks the layer tar r into the layer dir dir in overlay
// form, recording its tar-split into the new file meta, and returns the
// tar's length (tarsplit.Unpack). In a user namespace (a rootless store)
// it writes the overlay form rootless podman's native overlay reads, as
// containers/storage does there: opaque dirs marked user.overlay.opaque
// (trusted.* is out of reach; fuse-overlayfs reads that mark too) and
// device nodes, which the namespace may not make, left out.
func unpackLayer(ctx context.Context, r io.Reader, dir, meta string, diffID v1.Hash) (int64, error) {
	var opts []unpack.Option
	if userns.RunningInUserNS() {
		opts = append(opts, unpack.WithUserXattr(), unpack.WithDeviceSkip(func(string, error) {}))
	}
	return tarsplit.Unpack(ctx, r, dir, meta, 0o600, diffID, false, opts...)
}
