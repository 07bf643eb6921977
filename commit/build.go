package commit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/containerd/platforms"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"

	"github.com/layercommit/layercommit/buildcache"
	"github.com/layercommit/layercommit/builder"
	"github.com/layercommit/layercommit/export"
	"github.com/layercommit/layercommit/image"
	"github.com/layercommit/layercommit/statedir"
)

// BuildRequest is one `layercommit build`: the builder's options and
// where the result goes.
type BuildRequest struct {
	Build builder.Options
	// Outputs are the -o/--output values: destination references or
	// BuildKit's type=... spelling (export.ParseOutput). Every one gets
	// the same image (its layers compressed once, in the state dir). With
	// neither Outputs nor Tags the image goes to the local store (local:),
	// untagged.
	Outputs []string
	// Tags are -t names: stored in the local store, or with Push pushed
	// to their registries (and then not stored).
	Tags []string
	Push bool
	// Load loads the image into the running dockerd under every -t name
	// (docker-daemon:NAME, --load).
	Load bool
	// Squash makes the image as docker build --squash does (squashBuild).
	Squash bool
	// Labels are set in the image config (--label), as BuildKit sets
	// them: no history entry.
	Labels map[string]string
	// Annotations are --annotation values, [TYPE[\[PLATFORM\]]:]KEY=VALUE
	// as buildx spells them (ParseAnnotations).
	Annotations []string
	// CacheFrom and CacheTo are --cache-from and --cache-to values
	// (buildcache.ParseSpec): caches imported before the build, and
	// where its step cache is exported after the image is written.
	CacheFrom, CacheTo []string
	// Options open the bases and the destinations.
	Options []export.Option
}

// BuildResult is what a build wrote.
type BuildResult struct {
	// ID is the image ID (the config digest).
	ID v1.Hash
	// Descriptor is the image manifest's, as written to the first
	// destination (a registry with Push, else -o, else the store).
	Descriptor v1.Descriptor
	// Names are the -t names, normalised (docker.io/library/app:latest).
	Names []string
}

// Build checks the tags and annotations and opens every destination (so
// that a bad one fails before any step runs), builds the Dockerfile with
// bases resolved by Resolver, and writes the image to each destination.
// On error no destination shows a new image, except those written before
// a later one failed.
func Build(ctx context.Context, r BuildRequest) (*BuildResult, error) {
	res := &BuildResult{}
	for _, t := range r.Tags {
		n, err := export.NormalizeName(t)
		if err != nil {
			return nil, fmt.Errorf("bad -t: %w", err)
		}
		res.Names = append(res.Names, n)
	}
	if r.Push && len(res.Names) == 0 {
		return nil, errors.New("--push needs -t NAME (the registry reference to push to)")
	}
	var refs []string
	if r.Push {
		for _, n := range res.Names {
			refs = append(refs, "docker://"+n)
		}
	}
	if r.Load {
		if len(res.Names) == 0 {
			return nil, errors.New("--load needs -t NAME (the name to load the image as)")
		}
		for _, n := range res.Names {
			refs = append(refs, "docker-daemon:"+n)
		}
	}
	for _, o := range r.Outputs {
		more, err := export.ParseOutput(o)
		if err != nil {
			return nil, err
		}
		refs = append(refs, more...)
	}
	// Further store names are tagged after the first is written: one
	// copy of the blobs, one check of each.
	var moreTags []string
	if !r.Push && len(res.Names) > 0 {
		refs = append(refs, "local:"+res.Names[0])
		moreTags = res.Names[1:]
	}
	if len(refs) == 0 {
		refs = []string{"local:"}
	}
	var cacheFrom, cacheTo []buildcache.Spec
	for _, v := range r.CacheFrom {
		sp, err := buildcache.ParseSpec(v, false)
		if err != nil {
			return nil, err
		}
		cacheFrom = append(cacheFrom, sp)
	}
	for _, v := range r.CacheTo {
		sp, err := buildcache.ParseSpec(v, true)
		if err != nil {
			return nil, err
		}
		cacheTo = append(cacheTo, sp)
	}
	var dests []export.Destination
	defer func() {
		for _, d := range dests {
			d.Close()
		}
	}()
	for _, ref := range refs {
		d, err := export.NewDestination(ctx, ref, r.Options...)
		if err != nil {
			return nil, err
		}
		dests = append(dests, d)
	}
	o := r.Build
	o.Resolve = Resolver(r.Options...)
	for _, sp := range cacheTo {
		if sp.Max {
			o.CacheAllStages = true // their layers leave the state dir
		}
	}
	o.OCIMediaTypes = dests[0].PrefersOCI() || o.Compression.NeedsOCI()
	// Annotations are checked against the target platform before the build.
	plat := o.Platform
	if plat == "" {
		plat = platforms.DefaultString()
	}
	anns, err := ParseAnnotations(r.Annotations, plat)
	if err != nil {
		return nil, err
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	// An unreadable cache only costs time: the build goes on, as
	// BuildKit's does.
	for _, sp := range cacheFrom {
		src, err := buildcache.Import(ctx, sp, r.Options...)
		if err != nil {
			fmt.Fprintf(progress, "[WARNING]: --cache-from %s: %v\n", sp, err)
			continue
		}
		fmt.Fprintf(progress, "importing cache from %s: %d steps\n", sp, src.Len())
		o.CacheFrom = append(o.CacheFrom, src)
	}
	built, err := builder.Build(ctx, o)
	if err != nil {
		return nil, err
	}
	src, labels := built.Image, r.Labels
	if r.Squash {
		if src, err = squashBuild(ctx, built, labels, o); err != nil {
			return nil, err
		}
		labels = nil // set before squashing
	}
	img, err := finish(src, labels, anns)
	if err != nil {
		return nil, err
	}
	for i, d := range dests {
		out := img
		if d.PrefersOCI() {
			if out, err = image.OCI(img); err != nil {
				return nil, fmt.Errorf("converting to OCI media types: %w", err)
			}
		}
		if i == 0 {
			desc, err := partial.Descriptor(out)
			if err != nil {
				return nil, err
			}
			res.Descriptor = *desc
			// BuildKit reports the descriptor without artifactType.
			res.Descriptor.ArtifactType = ""
			if res.ID, err = out.ConfigName(); err != nil {
				return nil, err
			}
		}
		if err := d.Write(ctx, out); err != nil {
			return nil, fmt.Errorf("writing %s: %w", refs[i], err)
		}
	}
	store := export.OpenStore(export.NewOptions(r.Options...).StateDir)
	for _, n := range moreTags {
		if err := store.Tag(res.Names[0], n); err != nil {
			return nil, fmt.Errorf("tagging %s: %w", n, err)
		}
	}
	stateDir := o.StateDir
	if stateDir == "" {
		stateDir = statedir.Default
	}
	for _, sp := range cacheTo {
		var pushed []string
		for _, ref := range refs {
			if rest, ok := strings.CutPrefix(ref, "docker://"); ok {
				pushed = append(pushed, rest)
			}
		}
		if err := buildcache.Export(ctx, sp, stateDir, built, pushed, r.Options...); err != nil {
			if !sp.IgnoreError {
				return nil, err
			}
			fmt.Fprintf(progress, "[WARNING]: %v\n", err)
		}
	}
	return res, nil
}

// finish sets the --label labels in the config (a copy) and the
// manifest annotations. Annotations need an OCI manifest (Docker's has
// no such field): the image is converted first.
func finish(img v1.Image, labels, anns map[string]string) (v1.Image, error) {
	if len(labels) > 0 {
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		cf = cf.DeepCopy()
		if cf.Config.Labels == nil {
			cf.Config.Labels = map[string]string{}
		}
		for k, v := range labels {
			cf.Config.Labels[k] = v
		}
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			return nil, fmt.Errorf("setting labels: %w", err)
		}
	}
	if len(anns) > 0 {
		oci, err := image.OCI(img)
		if err != nil {
			return nil, fmt.Errorf("annotating: %w", err)
		}
		img = mutate.Annotations(oci, anns).(v1.Image)
	}
	return img, nil
}

// annotationKey is buildx's spelling of an --annotation key:
// [TYPE[\[PLATFORM\]]:]KEY.
var annotationKey = regexp.MustCompile(`^(?:([a-z-]+)(?:\[([A-Za-z0-9_/-]+)\])?:)?(\S+)$`)

// ParseAnnotations turns --annotation values into the manifest
// annotations of a single-platform image for platform plat, as BuildKit's
// image exporter does: no TYPE or "manifest" annotates the manifest, and
// with a [PLATFORM] only the manifest of that platform (other platforms'
// are dropped); "index" and "index-descriptor" are refused (a single
// platform has no index), and so is "manifest-descriptor", which this
// build does not write.
func ParseAnnotations(vals []string, plat string) (map[string]string, error) {
	want, err := platforms.Parse(plat)
	if err != nil {
		return nil, fmt.Errorf("bad platform %q: %w", plat, err)
	}
	want = platforms.Normalize(want)
	out := map[string]string{}
	for _, a := range vals {
		k, v, ok := strings.Cut(a, "=")
		g := annotationKey.FindStringSubmatch(k)
		if !ok || g == nil {
			return nil, fmt.Errorf("bad --annotation %q (want [TYPE:]KEY=VALUE)", a)
		}
		switch g[1] {
		case "", "manifest":
		case "index", "index-descriptor":
			return nil, fmt.Errorf("bad --annotation %q: index annotations not supported for single platform export", a)
		case "manifest-descriptor":
			return nil, fmt.Errorf("bad --annotation %q: manifest-descriptor annotations are not supported", a)
		default:
			return nil, fmt.Errorf("bad --annotation %q: unrecognized annotation type %s", a, g[1])
		}
		if g[2] != "" {
			p, err := platforms.Parse(g[2])
			if err != nil {
				return nil, fmt.Errorf("bad --annotation %q: %w", a, err)
			}
			if !platforms.OnlyStrict(want).Match(platforms.Normalize(p)) {
				continue
			}
		}
		out[g[3]] = v
	}
	return out, nil
}

// Resolver opens what FROM and COPY --from name (after --build-context):
// a transport reference (../shared/CLI.md) as it is, and a plain name
// from the local store when it holds it, else from its registry, as
// docker build resolves it (Reference).
func Resolver(opts ...export.Option) builder.Resolver {
	return func(ctx context.Context, ref string) (v1.Image, error) {
		target, err := Reference(ref, opts...)
		if err != nil {
			return nil, err
		}
		return export.Open(ctx, target, opts...)
	}
}

// Reference turns a reference as a user gives it into a transport
// reference: one with a transport stays as it is; a plain name is
// local:NAME when the local store (of the state dir the options name)
// holds it, else docker://NAME. A store that cannot be read is an error,
// not a miss.
func Reference(ref string, opts ...export.Option) (string, error) {
	if _, _, err := export.Parse(ref); err == nil {
		return ref, nil
	}
	if strings.HasPrefix(ref, "containers-storage:") {
		// The podman runtime's own store (commitPodman reads it; export
		// has no such transport yet).
		return ref, nil
	}
	if _, err := export.NormalizeName(ref); err == nil {
		_, err := export.OpenStore(export.NewOptions(opts...).StateDir).Lookup(ref)
		switch {
		case err == nil:
			return "local:" + ref, nil
		case !errors.Is(err, export.ErrNotInStore):
			return "", fmt.Errorf("looking up %s in the local store: %w", ref, err)
		}
	}
	return "docker://" + ref, nil
}

// Metadata is the --metadata-file of a build: the keys BuildKit's image
// exporter reports and docker/build-push-action reads
// (containerimage.digest, containerimage.config.digest,
// containerimage.descriptor, image.name: the names comma-joined).
func (r *BuildResult) Metadata() map[string]any {
	m := map[string]any{
		"containerimage.digest":        r.Descriptor.Digest.String(),
		"containerimage.config.digest": r.ID.String(),
		"containerimage.descriptor":    r.Descriptor,
	}
	if len(r.Names) > 0 {
		m["image.name"] = strings.Join(r.Names, ",")
	}
	return m
}
