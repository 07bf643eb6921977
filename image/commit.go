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
	squash        bool
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

// WithSquash drops the base's layers and history: the new layer holds
// the whole file system, and the new history entry is the only one. This
// is what podman and buildah do for --squash (buildah's image.go clears
// the history before appending the commit's entry); the rest of the base
// config (env, cmd, labels...) is kept.
func WithSquash() Option { return func(o *options) { o.squash = true } }

// Commit returns base with l on top and a config made by docker commit's
// rules. A layer whose diffID is the empty tar's is not added; its history
// entry is marked empty_layer instead. l may be nil for no changes. base is
// not modified.
func Commit(base v1.Image, l v1.Layer, opts ...Option) (v1.Image, error) {
	var ls []v1.Layer
	if l != nil {
		ls = []v1.Layer{l}
	}
	return CommitLayers(base, ls, opts...)
}

// CommitLayers is Commit with the change set in several layers, bottom
// first (a split change set): each non-empty layer gets a history entry
// of its own, all alike, as docker gives every layer one. Empty layers
// are not added; no layer at all gives one empty_layer entry.
func CommitLayers(base v1.Image, ls []v1.Layer, opts ...Option) (v1.Image, error) {
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
	var add []v1.Layer
	for _, l := range ls {
		d, err := l.DiffID()
		if err != nil {
			return nil, fmt.Errorf("reading layer diffID: %w", err)
		}
		if d != diff.EmptyDiffID {
			add = append(add, l)
		}
	}
	if o.squash {
		mt, err := DockerMediaTypes(base)
		if err != nil {
			return nil, err
		}
		base = Scratch(!mt)
		cf.History = nil
		cf.RootFS.DiffIDs = nil
	}
	if len(add) == 0 {
		h.EmptyLayer = true
		cf.History = append(cf.History, h)
		return mutate.ConfigFile(base, cf)
	}
	cf.RootFS.Type = "layers"
	img := base
	for _, l := range add {
		d, _ := l.DiffID()
		cf.History = append(cf.History, h)
		cf.RootFS.DiffIDs = append(cf.RootFS.DiffIDs, d)
		a := mutate.Addendum{Layer: l}
		// Seekable layers (estargz, zstd:chunked) carry their TOC's place
		// and digest in the manifest's layer descriptor.
		if an, ok := l.(interface{ Annotations() map[string]string }); ok {
			a.Annotations = an.Annotations()
		}
		if img, err = mutate.Append(img, a); err != nil {
			return nil, fmt.Errorf("appending layer: %w", err)
		}
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
