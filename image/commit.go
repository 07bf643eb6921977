package image

import (
	"fmt"
	"runtime"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/layercommit/layercommit/diff"
)

// Option configures Commit.
type Option func(*options)

type options struct {
	created       time.Time
	author        string
	comment       string
	createdBy     *string
	changes       []string
	dockerVersion string
	container     *v1.Config
}

// WithCreated sets the image and history creation time (default now).
func WithCreated(t time.Time) Option { return func(o *options) { o.created = t } }

// WithAuthor sets the image and history author (docker commit -a).
func WithAuthor(a string) Option { return func(o *options) { o.author = a } }

// WithComment sets the history comment (docker commit -m).
func WithComment(m string) Option { return func(o *options) { o.comment = m } }

// WithCreatedBy sets the history created_by; by default it is the
// container config's Cmd joined by spaces, as docker commit writes it.
func WithCreatedBy(s string) Option { return func(o *options) { o.createdBy = &s } }

// WithChanges applies `docker commit --change` instructions (see
// dockerfile.ApplyChanges).
func WithChanges(changes ...string) Option {
	return func(o *options) { o.changes = append(o.changes, changes...) }
}

// WithDockerVersion sets docker_version ("" leaves it out).
func WithDockerVersion(v string) Option { return func(o *options) { o.dockerVersion = v } }

// WithContainerConfig gives the config of the container being committed;
// by default it is the base image's config (a container run with no
// options).
func WithContainerConfig(c v1.Config) Option { return func(o *options) { o.container = &c } }

// Commit returns base with l on top and a config made by docker commit's
// rules. A layer whose diffID is the empty tar's is not added; its history
// entry is marked empty_layer instead. l may be nil for no changes. base is
// not modified.
func Commit(base v1.Image, l v1.Layer, opts ...Option) (v1.Image, error) {
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	if o.created.IsZero() {
		o.created = time.Now()
	}
	bcf, err := base.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading base config: %w", err)
	}
	container := bcf.Config
	if o.container != nil {
		container = *o.container
	}
	cfg, err := CommitConfig(container, o.changes)
	if err != nil {
		return nil, err
	}

	cf := bcf.DeepCopy()
	cf.Config = cfg
	cf.Created = v1.Time{Time: o.created.UTC()}
	cf.Author = o.author
	cf.Container = ""
	cf.DockerVersion = o.dockerVersion
	if cf.Architecture == "" {
		cf.Architecture = runtime.GOARCH
	}
	if cf.OS == "" {
		cf.OS = "linux"
	}
	createdBy := strings.Join(container.Cmd, " ")
	if o.createdBy != nil {
		createdBy = *o.createdBy
	}
	h := v1.History{
		Created:   cf.Created,
		CreatedBy: createdBy,
		Author:    o.author,
		Comment:   o.comment,
	}
	empty := l == nil
	if l != nil {
		d, err := l.DiffID()
		if err != nil {
			return nil, fmt.Errorf("reading layer diffID: %w", err)
		}
		empty = d == diff.EmptyDiffID
	}
	cf.History = append(cf.History, h)
	if empty {
		cf.History[len(cf.History)-1].EmptyLayer = true
		return mutate.ConfigFile(base, cf)
	}
	d, _ := l.DiffID()
	cf.RootFS.Type = "layers"
	cf.RootFS.DiffIDs = append(cf.RootFS.DiffIDs, d)
	add := mutate.Addendum{Layer: l}
	// Seekable layers (estargz, zstd:chunked) carry their TOC's place and
	// digest in the manifest's layer descriptor.
	if a, ok := l.(interface{ Annotations() map[string]string }); ok {
		add.Annotations = a.Annotations()
	}
	img, err := mutate.Append(base, add)
	if err != nil {
		return nil, fmt.Errorf("appending layer: %w", err)
	}
	return mutate.ConfigFile(img, cf)
}

// DockerMediaTypes reports whether img's manifest is Docker v2 schema 2
// (otherwise OCI), so that a new layer can be given a matching type.
func DockerMediaTypes(img v1.Image) (bool, error) {
	mt, err := img.MediaType()
	if err != nil {
		return false, fmt.Errorf("reading base media type: %w", err)
	}
	switch mt {
	case types.DockerManifestSchema2:
		return true, nil
	case types.OCIManifestSchema1:
		return false, nil
	}
	return false, fmt.Errorf("unsupported base manifest media type %s", mt)
}

// Scratch is the empty image: OCI media types if oci is set, else Docker's.
func Scratch(oci bool) v1.Image {
	if !oci {
		return empty.Image
	}
	return mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
}
