package commit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

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
	"github.com/layercommit/layercommit/layer"
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
	if err := r.checkSnapshotCommit("the containerd image store"); err != nil {
		return v1.Hash{}, err
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
	ccRaw, err := dockerroot.EncodeContainerConfig29(containerCfg)
	if err != nil {
		return v1.Hash{}, err
	}
	var parentID string
	if base != nil && r.From == "" {
		parentID = c.Image.String()
	}
	sc := snapshotCommit{
		id: c.ID, snap: sn, base: base,
		config: dockerroot.CommitConfig{ContainerID: c.ID, Container: containerCfg, Config: cfg, OS: c.OS},
		dockerLabels: func(d containerdDest, id v1.Hash, chain string) {
			d.dockerLabels(id, chain, parentID, ccRaw)
		},
	}
	if r.Pause && c.Running && !c.Paused && c.Pid > 0 {
		sc.pid = c.Pid
	}
	dest, err := r.containerdDestination(ctx, opts)
	if err != nil {
		return v1.Hash{}, err
	}
	defer dest.Close()
	return r.commitSnapshot(ctx, sc, dest)
}

// commitContainerd commits a container of a containerd root (Kubernetes'
// k8s.io namespace by default; ctr's and nerdctl's too) as nerdctl and
// Docker's containerd store commit: the walking differ's change set of
// the container's snapshot (key: its record's, with no init layer)
// against its parent, on the image its record names, with the base
// config's fields and --change applied by docker commit's rules, and the
// history entry created by the container's process arguments. The
// destination containerd:NAME[:TAG] is the same root and namespace
// (written with the daemon stopped). containerd itself has no commit to
// compare with: the layer is the one `ctr snapshots diff` writes of the
// container's snapshot.
func commitContainerd(ctx context.Context, r ContainerRequest, opts []export.Option) (v1.Hash, error) {
	if err := r.checkSnapshotCommit("containerd"); err != nil {
		return v1.Hash{}, err
	}
	st, err := containerdstore.Open(r.containerdRoot())
	if err != nil {
		return v1.Hash{}, err
	}
	ns := r.namespace()
	c, err := st.Container(ns, r.Container)
	if err != nil {
		return v1.Hash{}, err
	}
	if c.Snapshotter != st.Snapshotter {
		return v1.Hash{}, fmt.Errorf("container %s uses the snapshotter %q; only %s is supported", c.ID, c.Snapshotter, st.Snapshotter)
	}
	sn, err := st.Snapshot(ns, c.SnapshotKey)
	if err != nil {
		return v1.Hash{}, err
	}
	var base v1.Image
	switch {
	case r.From != "":
		base, err = export.Open(ctx, r.From, opts...)
	case c.Image != "":
		base, err = st.V1Image(ns, c.Image, export.NewOptions(opts...).Platform)
	}
	if err != nil {
		return v1.Hash{}, fmt.Errorf("image of container %s: %w", c.ID, err)
	}
	var cc dockerroot.ContainerConfig
	if base != nil {
		raw, err := base.RawConfigFile()
		if err != nil {
			return v1.Hash{}, fmt.Errorf("reading base config: %w", err)
		}
		var top struct {
			Config json.RawMessage `json:"config"`
		}
		if err := json.Unmarshal(raw, &top); err != nil {
			return v1.Hash{}, fmt.Errorf("reading base config: %w", err)
		}
		if len(top.Config) > 0 {
			if cc, err = dockerroot.DecodeContainerConfig(top.Config); err != nil {
				return v1.Hash{}, fmt.Errorf("base config: %w", err)
			}
		}
	}
	cfg, _, err := dockerroot.ApplyChanges(cc, r.Changes)
	if err != nil {
		return v1.Hash{}, err
	}
	sc := snapshotCommit{id: c.ID, snap: sn, base: base,
		config: dockerroot.CommitConfig{ContainerID: c.ID, Container: dockerroot.ContainerConfig{Cmd: c.Args}, Config: cfg, OS: "linux"}}
	if r.Pause {
		sc.pid = taskPid(r.containerdState(), ns, c.ID)
	}
	// containerd: destinations default to the container's own root and
	// namespace.
	opts = append(opts, export.WithContainerd(st.Root, ns))
	dest, err := r.containerdDestination(ctx, opts)
	if err != nil {
		return v1.Hash{}, err
	}
	defer dest.Close()
	return r.commitSnapshot(ctx, sc, dest)
}

func (r ContainerRequest) containerdState() string {
	if r.ContainerdState != "" {
		return r.ContainerdState
	}
	return "/run/containerd"
}

// taskPid is the pid of container id's running task, as its runc shim
// records it (<state>/io.containerd.runtime.v2.task/<ns>/<id>/init.pid),
// or 0 when it has none: Freeze then checks that the pid's cgroup names
// the container before freezing it.
func taskPid(state, ns, id string) int {
	b, err := os.ReadFile(filepath.Join(state, "io.containerd.runtime.v2.task", ns, id, "init.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// checkSnapshotCommit refuses what a commit of a containerd snapshot
// does not take, and makes the profile follow the store.
func (r *ContainerRequest) checkSnapshotCommit(what string) error {
	if r.StoreCompat {
		r.Compat = compat.Containerd
	}
	if r.Squash || r.MaxLayerSize > 0 {
		return fmt.Errorf("--squash and --max-layer-size are not supported on %s yet", what)
	}
	if r.DockerVersion != nil {
		return fmt.Errorf("--docker-version does not apply to %s (its configs have no docker_version)", what)
	}
	if r.Format != "" {
		return fmt.Errorf("--format is podman commit's; %s commits OCI images", what)
	}
	return nil
}

// snapshotCommit is a container of a containerd snapshotter to commit.
type snapshotCommit struct {
	id   string
	snap containerdstore.Snapshot
	// base is the image below (nil: scratch).
	base v1.Image
	// config is the commit's config but for the fields the layer and
	// the base give (Parent, Created, DiffID, Empty, author, comment).
	config dockerroot.CommitConfig
	// pid, when above zero, is the running container's, frozen while
	// its snapshot is read.
	pid int
	// dockerLabels adds Docker's records for the image id.
	dockerLabels func(d containerdDest, id v1.Hash, chain string)
}

// commitSnapshot writes the layer of s's snapshot (the walking differ's
// change set: diff.Snapshot), the config (dockerroot.EncodeOCI) and the
// manifest (dockerroot.ManifestOCI, the base's layer descriptors as its
// manifest has them) into dest and returns the manifest digest, the ID
// containerd-based stores give an image.
func (r ContainerRequest) commitSnapshot(ctx context.Context, s snapshotCommit, dest containerdDest) (v1.Hash, error) {
	var baseLayers []ocispec.Descriptor
	if s.base != nil {
		var err error
		if s.config.Parent, err = s.base.RawConfigFile(); err != nil {
			return v1.Hash{}, fmt.Errorf("reading base config: %w", err)
		}
		raw, err := s.base.RawManifest()
		if err != nil {
			return v1.Hash{}, fmt.Errorf("reading base manifest: %w", err)
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			return v1.Hash{}, fmt.Errorf("reading base manifest: %w", err)
		}
		baseLayers = m.Layers
	}
	if s.pid > 0 {
		thaw, err := dockerroot.Freeze(s.pid, s.id)
		if err != nil {
			return v1.Hash{}, fmt.Errorf("pausing container %s: %w", s.id, err)
		}
		defer thaw()
	}
	src, err := r.exclude(diff.Snapshot(s.snap.Lowers, s.snap.UpperDir, nil))
	if err != nil {
		return v1.Hash{}, err
	}
	ls, err := r.writeLayers(ctx, dest, src, false, 0)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("container %s: %w", s.id, err)
	}
	id, err := r.snapshotImage(ctx, s, baseLayers, ls, dest)
	if err != nil {
		removeLayers(ls)
		return v1.Hash{}, err
	}
	return id, nil
}

// snapshotImage puts the written layers ls on s's base and writes the
// image into dest.
func (r ContainerRequest) snapshotImage(ctx context.Context, s snapshotCommit, baseLayers []ocispec.Descriptor, ls []*layer.Layer, dest containerdDest) (v1.Hash, error) {
	created := r.Created
	if t := r.created(); !t.IsZero() {
		created = t
	}
	if created.IsZero() {
		created = time.Now()
	}
	ccfg := s.config
	ccfg.Author, ccfg.Comment, ccfg.Created = r.Author, r.Comment, created
	ccfg.DiffID, ccfg.Empty = diff.EmptyDiffID, len(ls) == 0
	var top []v1.Layer
	layers := baseLayers
	for _, l := range ls {
		ccfg.DiffID, _ = l.DiffID()
		d, err := l.Digest()
		if err != nil {
			return v1.Hash{}, err
		}
		size, err := l.Size()
		if err != nil {
			return v1.Hash{}, err
		}
		mt, err := l.MediaType()
		if err != nil {
			return v1.Hash{}, err
		}
		layers = append(layers, ocispec.Descriptor{MediaType: string(mt), Digest: digest.Digest(d.String()), Size: size})
		top = append(top, l)
	}
	raw, err := ccfg.EncodeOCI()
	if err != nil {
		return v1.Hash{}, err
	}
	man, err := dockerroot.ManifestOCI(raw, layers)
	if err != nil {
		return v1.Hash{}, err
	}
	all := top
	if s.base != nil {
		bl, err := s.base.Layers()
		if err != nil {
			return v1.Hash{}, err
		}
		all = append(bl, top...)
	}
	img, err := image.WithRawManifest(man, raw, all)
	if err != nil {
		return v1.Hash{}, err
	}
	id, err := img.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	if s.dockerLabels != nil {
		s.dockerLabels(dest, id, chainID(ccfg, ccfg.Parent))
	}
	if err := dest.Write(ctx, img); err != nil {
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

// containerdDest is where a commit of a containerd snapshot goes: an
// export destination; for docker-root: on a containerd image store root
// (export's containerd: destination, namespace moby) store is set too, so
// that the records Docker writes beside a commit are added.
type containerdDest struct {
	export.Destination
	store *containerdstore.Destination // nil unless into the store
}

func (r ContainerRequest) containerdDestination(ctx context.Context, opts []export.Option) (containerdDest, error) {
	d, err := export.NewDestination(ctx, r.To, opts...)
	if err != nil {
		return containerdDest{}, err
	}
	// docker-root: on a containerd image store root is export's
	// containerd: destination in namespace moby.
	store, _ := d.(*containerdstore.Destination)
	if !strings.HasPrefix(r.To, "docker-root:") {
		store = nil
	}
	return containerdDest{Destination: d, store: store}, nil
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
