package export

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/layer"
)

// Transport reads and writes the images of one reference prefix.
type Transport interface {
	// Name is the prefix before the first colon, e.g. "oci".
	Name() string
	// Open returns the image rest names, having read its manifest and
	// config so that a bad reference fails here and not later.
	Open(ctx context.Context, rest string, o *Options) (v1.Image, error)
	// Destination prepares writing an image to rest; nothing is written
	// until Destination.Write.
	Destination(ctx context.Context, rest string, o *Options) (Destination, error)
}

// Destination is where one image is written.
type Destination interface {
	// BlobDir is a directory for new layer blobs, on the same file system
	// as the destination when there is one, so that a finished blob can
	// be renamed into place. Write may assume that blobs found there by
	// digest are complete.
	BlobDir() string
	// PrefersOCI says whether an image made from scratch should get OCI
	// rather than Docker media types here.
	PrefersOCI() bool
	// Write writes img. On error nothing the destination showed before is
	// changed (earlier tags stay intact).
	Write(ctx context.Context, img v1.Image) error
	// Close releases temp space. It is safe to call more than once.
	Close() error
}

// Options are what transports may need besides the reference.
type Options struct {
	// Keychain finds registry credentials (authn.DefaultKeychain).
	Keychain authn.Keychain
	// Platform picks an image from a multi-platform index.
	Platform v1.Platform
	// DockerRoot is the Docker data root for docker-root: references.
	DockerRoot string
	// Compat is the profile for bytes a transport writes itself
	// (docker-root: tar-split, re-tarred layers).
	Compat compat.Profile
	// Force writes into a Docker data root a live dockerd uses.
	Force bool
	// Parent is recorded as the parent image of a docker-root: write.
	Parent v1.Hash
	// Counters receive upload progress.
	Counters *layer.Counters
	// StateDir is the state dir whose image store local: names
	// (statedir.Default if empty).
	StateDir string
	// DockerHost is the dockerd API docker-daemon: speaks to, as
	// DOCKER_HOST spells it (unix:///var/run/docker.sock if empty); the
	// caller reads the environment.
	DockerHost string
	// ContainerdRoot and Namespace locate containerd: images
	// (/var/lib/containerd and "default" unless set).
	ContainerdRoot, Namespace string
}

// Option configures Open and NewDestination.
type Option func(*Options)

// WithKeychain sets how registry credentials are found.
func WithKeychain(k authn.Keychain) Option { return func(o *Options) { o.Keychain = k } }

// WithCompat sets the profile for bytes transports write themselves.
func WithCompat(p compat.Profile) Option { return func(o *Options) { o.Compat = p } }

// WithForce lets a docker-root: write go ahead while dockerd runs.
func WithForce(force bool) Option { return func(o *Options) { o.Force = force } }

// WithParent records the parent image of a docker-root: write.
func WithParent(id v1.Hash) Option { return func(o *Options) { o.Parent = id } }

// WithDockerRoot sets the Docker data root.
func WithDockerRoot(dir string) Option { return func(o *Options) { o.DockerRoot = dir } }

// WithCounters makes uploads report progress into c.
func WithCounters(c *layer.Counters) Option { return func(o *Options) { o.Counters = c } }

// WithDockerHost sets the dockerd API address of docker-daemon:.
func WithDockerHost(h string) Option { return func(o *Options) { o.DockerHost = h } }

// WithStateDir sets the state dir of the local: image store.
func WithStateDir(dir string) Option { return func(o *Options) { o.StateDir = dir } }

// WithContainerd sets the containerd root and namespace of containerd:
// references; an empty one keeps the default.
func WithContainerd(root, namespace string) Option {
	return func(o *Options) {
		if root != "" {
			o.ContainerdRoot = root
		}
		if namespace != "" {
			o.Namespace = namespace
		}
	}
}

// NewOptions returns the options opts set over the defaults, as Open and
// NewDestination see them.
func NewOptions(opts ...Option) *Options {
	o := &Options{
		Keychain:   authn.DefaultKeychain,
		Platform:   v1.Platform{OS: "linux", Architecture: runtime.GOARCH},
		DockerRoot: "/var/lib/docker",
		Compat:     compat.Default,

		ContainerdRoot: "/var/lib/containerd",
		Namespace:      "default",
	}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

var transports = map[string]Transport{}

// register adds a transport; each transport's file calls it in init.
func register(t Transport) { transports[t.Name()] = t }

// Transports lists the known transport names, sorted.
func Transports() []string {
	var n []string
	for k := range transports {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Parse splits a reference into its transport and the rest. "scratch" is
// a transport with an empty rest.
func Parse(ref string) (Transport, string, error) {
	name, rest, ok := strings.Cut(ref, ":")
	if !ok && ref != "scratch" {
		return nil, "", fmt.Errorf("image reference %q has no transport (want one of %s, e.g. oci:DIR:TAG)", ref, strings.Join(Transports(), ", "))
	}
	t, found := transports[name]
	if !found {
		return nil, "", fmt.Errorf("image reference %q: unknown transport %q (known: %s)", ref, name, strings.Join(Transports(), ", "))
	}
	if name == "docker" {
		// skopeo's spelling is docker://; without the slashes "docker:20"
		// is the plain name of Docker's own image (FROM docker:20), not
		// a registry reference.
		var ok bool
		if rest, ok = strings.CutPrefix(rest, "//"); !ok {
			return nil, "", fmt.Errorf("image reference %q has no transport: the registry transport is docker://HOST/REPO[:TAG]", ref)
		}
	}
	return t, rest, nil
}

// Open returns the image ref names.
func Open(ctx context.Context, ref string, opts ...Option) (v1.Image, error) {
	t, rest, err := Parse(ref)
	if err != nil {
		return nil, err
	}
	img, err := t.Open(ctx, rest, NewOptions(opts...))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", ref, err)
	}
	return img, nil
}

// NewDestination prepares writing an image to ref.
func NewDestination(ctx context.Context, ref string, opts ...Option) (Destination, error) {
	t, rest, err := Parse(ref)
	if err != nil {
		return nil, err
	}
	d, err := t.Destination(ctx, rest, NewOptions(opts...))
	if err != nil {
		return nil, fmt.Errorf("destination %s: %w", ref, err)
	}
	return d, nil
}

// check reads an image's manifest and config so that errors show early.
func check(img v1.Image) (v1.Image, error) {
	if _, err := img.Manifest(); err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	if _, err := img.ConfigFile(); err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return img, nil
}
