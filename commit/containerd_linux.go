package commit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/distribution/reference"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/containerdstore"
	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/dockerroot"
	"github.com/layercommit/layercommit/export"
	"github.com/layercommit/layercommit/image"
)

// snapshotStore finds the containerd root among roots whose namespace ns
// holds the snapshot key, and the snapshot. The error names every root
// probed when none has it.
func snapshotStore(roots []string, ns, key string) (*containerdstore.Store, containerdstore.Snapshot, error) {
	var errs []string
	for _, root := range roots {
		st, err := containerdstore.Open(root)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		sn, err := st.Snapshot(ns, key)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		return st, sn, nil
	}
	return nil, containerdstore.Snapshot{}, fmt.Errorf("container %s has no snapshot: %s", key, strings.Join(errs, "; "))
}

// commitDockerContainerd commits a container of a Docker data root on the
// containerd image store as Docker 29's docker commit does there (moby v2
// daemon/containerd image_commit.go): the walking differ's change set of
// the container's snapshot against its parent (<ID>-init over the image),
// gzip as containerd writes it, the config and manifest through
// dockerroot.EncodeOCI and ManifestOCI, the base's layer descriptors kept
// as its manifest has them. The image ID is the manifest's digest.
func commitDockerContainerd(ctx context.Context, r ContainerRequest, root *dockerroot.Root, opts []export.Option) (v1.Hash, error) {
	if r.StoreCompat {
		r.Compat = compat.Containerd
	}
	if r.Squash || r.MaxLayerSize > 0 {
		return v1.Hash{}, errors.New("--squash and --max-layer-size are not supported on the containerd image store yet")
	}
	if r.DockerVersion != nil {
		return v1.Hash{}, errors.New("--docker-version does not apply to the containerd image store (its configs have no docker_version)")
	}
	c, err := root.Container(r.Container)
	if err != nil {
		return v1.Hash{}, err
	}
	st, sn, err := snapshotStore(root.ContainerdRoots(), containerdstore.NamespaceDocker, c.ID)
	if err != nil {
		return v1.Hash{}, err
	}
	cc, err := dockerroot.DecodeContainerConfig(c.Config)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("container %s: %w", c.ID, err)
	}
	cfg, containerCfg, err := dockerroot.ApplyChanges(cc, r.Changes)
	if err != nil {
		return v1.Hash{}, err
	}
	var base v1.Image
	var baseLayers []ocispec.Descriptor
	var parent []byte
	switch {
	case r.From != "":
		if base, err = export.Open(ctx, r.From, opts...); err != nil {
			return v1.Hash{}, err
		}
	case len(c.ImageManifest) > 0:
		var d v1.Descriptor
		if err := json.Unmarshal(c.ImageManifest, &d); err != nil {
			return v1.Hash{}, fmt.Errorf("container %s: its image manifest: %w", c.ID, err)
		}
		if base, err = st.ImageByManifest(d); err != nil {
			return v1.Hash{}, fmt.Errorf("image of container %s: %w", c.ID, err)
		}
	}
	if base != nil {
		if parent, err = base.RawConfigFile(); err != nil {
			return v1.Hash{}, fmt.Errorf("reading base config: %w", err)
		}
		raw, err := base.RawManifest()
		if err != nil {
			return v1.Hash{}, fmt.Errorf("reading base manifest: %w", err)
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			return v1.Hash{}, fmt.Errorf("reading base manifest: %w", err)
		}
		baseLayers = m.Layers
	}
	dest, err := r.containerdDestination(ctx, st, opts)
	if err != nil {
		return v1.Hash{}, err
	}
	defer dest.Close()
	if r.Pause && c.Running && !c.Paused && c.Pid > 0 {
		thaw, err := dockerroot.Freeze(c.Pid, c.ID)
		if err != nil {
			return v1.Hash{}, fmt.Errorf("pausing container %s: %w", c.ID, err)
		}
		defer thaw()
	}
	src, err := r.exclude(diff.Snapshot(sn.Lowers, sn.UpperDir, nil))
	if err != nil {
		return v1.Hash{}, err
	}
	ls, err := r.writeLayers(ctx, dest, src, false, 0)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("container %s: %w", c.ID, err)
	}
	created := r.Created
	if t := r.created(); !t.IsZero() {
		created = t
	}
	if created.IsZero() {
		created = time.Now()
	}
	ccfg := dockerroot.CommitConfig{
		Parent: parent, ContainerID: c.ID, Container: containerCfg, Config: cfg, OS: c.OS,
		Author: r.Author, Comment: r.Comment, Created: created, DiffID: diff.EmptyDiffID, Empty: len(ls) == 0,
	}
	var top []v1.Layer
	layers := baseLayers
	for _, l := range ls {
		ccfg.DiffID, _ = l.DiffID()
		d, err := l.Digest()
		if err != nil {
			removeLayers(ls)
			return v1.Hash{}, err
		}
		size, err := l.Size()
		if err != nil {
			removeLayers(ls)
			return v1.Hash{}, err
		}
		mt, err := l.MediaType()
		if err != nil {
			removeLayers(ls)
			return v1.Hash{}, err
		}
		layers = append(layers, ocispec.Descriptor{MediaType: string(mt), Digest: digest.Digest(d.String()), Size: size})
		top = append(top, l)
	}
	raw, err := ccfg.EncodeOCI()
	if err != nil {
		removeLayers(ls)
		return v1.Hash{}, err
	}
	man, err := dockerroot.ManifestOCI(raw, layers)
	if err != nil {
		removeLayers(ls)
		return v1.Hash{}, err
	}
	all := top
	if base != nil {
		bl, err := base.Layers()
		if err != nil {
			removeLayers(ls)
			return v1.Hash{}, err
		}
		all = append(bl, top...)
	}
	img, err := image.WithRawManifest(man, raw, all)
	if err != nil {
		removeLayers(ls)
		return v1.Hash{}, err
	}
	id, err := img.Digest()
	if err != nil {
		removeLayers(ls)
		return v1.Hash{}, err
	}
	ccRaw, err := dockerroot.EncodeContainerConfig29(containerCfg)
	if err != nil {
		removeLayers(ls)
		return v1.Hash{}, err
	}
	var parentID string
	if base != nil && r.From == "" {
		parentID = c.Image.String()
	}
	dest.dockerLabels(id, chainID(ccfg, parent), parentID, ccRaw)
	if err := dest.Write(ctx, img); err != nil {
		removeLayers(ls)
		return v1.Hash{}, fmt.Errorf("writing %s: %w", r.To, err)
	}
	return id, nil
}

// chainID is the chain ID of the committed image's diffIDs (the
// snapshot its layers unpack to).
func chainID(c dockerroot.CommitConfig, parent []byte) string {
	var p struct {
		RootFS struct {
			DiffIDs []digest.Digest `json:"diff_ids"`
		} `json:"rootfs"`
	}
	json.Unmarshal(parent, &p)
	ids := p.RootFS.DiffIDs
	if !c.Empty {
		ids = append(ids, digest.Digest(c.DiffID.String()))
	}
	return identity.ChainID(ids).String()
}

// containerdDest is where a commit of a containerd-store container goes:
// docker-root: (the container's own data root) becomes the containerd
// store holding the container, namespace moby, with Docker's records;
// anything else is an export destination.
type containerdDest struct {
	export.Destination
	store *containerdstore.Destination // nil unless into the store
}

func (r ContainerRequest) containerdDestination(ctx context.Context, st *containerdstore.Store, opts []export.Option) (containerdDest, error) {
	rest, ok := strings.CutPrefix(r.To, "docker-root:")
	if !ok {
		d, err := export.NewDestination(ctx, r.To, opts...)
		return containerdDest{Destination: d}, err
	}
	var names []string
	if rest != "" {
		n, err := reference.ParseNormalizedNamed(rest)
		if err != nil {
			return containerdDest{}, fmt.Errorf("image name %q: %w", rest, err)
		}
		if _, digested := n.(reference.Digested); digested {
			return containerdDest{}, fmt.Errorf("docker-root: destination %q names a digest; give NAME[:TAG]", rest)
		}
		names = []string{reference.TagNameOnly(n).String()}
	}
	// The store is written with dockerd stopped: it supervises the
	// containerd that holds meta.db, and keeps its own view (--force
	// does not help: containerd's lock is taken either way).
	if o := export.NewOptions(opts...); o.DockerRoot != "" {
		if pid, ok := dockerroot.DaemonUsing(o.DockerRoot); ok {
			return containerdDest{}, fmt.Errorf("dockerd (pid %d) is running on %s: stop it before writing into its containerd image store", pid, o.DockerRoot)
		}
	}
	d, err := st.Destination(containerdstore.NamespaceDocker, containerdstore.WriteOptions{Names: names})
	if err != nil {
		return containerdDest{}, err
	}
	return containerdDest{Destination: d, store: d}, nil
}

// dockerLabels sets the records Docker 29's commit writes beside the
// image (moby daemon/containerd image_builder.go createImageOCI and
// writeContentsForImage): the container config blob, labelled with the
// image's manifest digest; the config blob's gc references to it and to
// the image's snapshot (its chain ID, which Docker unpacks at the first
// run); the image record's parent (or from-scratch mark) and container
// config labels.
func (d containerdDest) dockerLabels(manifest v1.Hash, chainID string, parent string, containerConfig []byte) {
	if d.store == nil {
		return
	}
	cc := digest.FromBytes(containerConfig)
	o := &d.store.Options
	o.Extra = append(o.Extra, containerdstore.Blob{
		Digest: v1.Hash{Algorithm: "sha256", Hex: cc.Encoded()}, Size: int64(len(containerConfig)),
		Open:   func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(containerConfig)), nil },
		Labels: map[string]string{"org.mobyproject.content.image": manifest.String()},
	})
	o.ConfigLabels = map[string]string{
		"containerd.io/gc.ref.snapshot.overlayfs":            chainID,
		"containerd.io/gc.ref.content.moby/container.config": cc.String(),
	}
	o.ImageLabels = map[string]string{
		"org.mobyproject.image.parent":          parent,
		"org.mobyproject.image.containerconfig": cc.String(),
	}
	if parent == "" {
		o.ImageLabels["org.mobyproject.image.fromscratch"] = "1"
	}
}
