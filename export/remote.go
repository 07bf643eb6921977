package export

import (
	"context"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// RemoteOptions are the go-containerregistry options docker:// speaks
// with (keychain, plain HTTP to loopback, resuming transport, retries),
// for other packages that talk to a registry (the build cache).
func RemoteOptions(ctx context.Context, opts ...Option) []remote.Option {
	return registry{}.options(ctx, NewOptions(opts...))
}

// ParseRemote parses a registry reference as docker:// does (HOST/REPO[:TAG]
// or @DIGEST, no transport prefix).
func ParseRemote(ref string) (name.Reference, error) { return parseRemote(ref) }
