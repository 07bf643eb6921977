package commit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/dockerroot"
	"github.com/layercommit/layercommit/export"
	"github.com/layercommit/layercommit/image"
	"github.com/layercommit/layercommit/layer"
)

// ContainerRequest is one `layercommit commit --container`: a container
// of a Docker data root committed the way dockerd's docker commit does it,
// with no daemon.
type ContainerRequest struct {
	// Container is a full ID, a unique ID prefix or a name.
	Container string
	// From overrides the base image (default: the container's image).
	From string
	// To is the destination reference.
	To string
	// Changes are docker commit --change instructions.
	Changes         []string
	Author, Comment string
	// Created defaults to now; Output.SourceDateEpoch overrides it.
	Created time.Time
	// DockerVersion overrides the profile's docker_version when not nil.
	DockerVersion *string
	// Pause freezes a running container's cgroup while its upper dir is
	// read, as docker commit does by default.
	Pause bool
	// Squash makes one layer of the merged file system: the base's
	// layers (dockerd's overlay2 diff dirs, used as they are, for the
	// container's own image; unpacked into StateDir for a From base)
	// with the container's upper dir on top. The container's -init layer
	// is left out, as docker commit leaves it out. The base's history and
	// layers are dropped from the config, and the image gets no parent.
	Squash   bool
	StateDir string
	// MaxLayerSize, when above zero, splits the change set into layers of
	// at most that many uncompressed tar bytes (diff.Split), each with a
	// history entry of its own, as CommitRequest does.
	MaxLayerSize int64
	// Runtime is "docker", "podman" (a containers-storage store at
	// StorageRoot and RunRoot, podman_linux.go), or "" to take the one
	// store holding the container. StoreCompat: --compat was not given,
	// so the profile follows the store.
	Runtime, StorageRoot, RunRoot string
	StoreCompat                   bool
	// ContainerdRoot and ContainerdState are containerd's --root and
	// --state (default /var/lib/containerd, /run/containerd) and
	// Namespace its namespace (default "default", ctr's; Kubernetes uses
	// k8s.io), for the containerd
	// runtime (containerd_linux.go).
	ContainerdRoot, ContainerdState, Namespace string
	// Format is podman commit's --format: "oci" (the default) or
	// "docker"; only the podman runtime takes it.
	Format string
	Output
}

// CommitContainer commits a container of the data root named by
// export.WithDockerRoot in r.Options: its upper dir becomes the new layer, its image the base,
// its config (merged with the changes by docker commit's rules) the new
// config, encoded byte for byte as dockerd would, so the returned image ID
// is the one docker commit would give.
func CommitContainer(ctx context.Context, r ContainerRequest) (v1.Hash, error) {
	r.setDefaults()
	if err := image.ValidateChanges(r.Changes, r.Compat); err != nil {
		return v1.Hash{}, err
	}
	_, err := r.exclude(nil)
	if err != nil {
		return v1.Hash{}, err
	}
	if r.MaxLayerSize < 0 {
		return v1.Hash{}, fmt.Errorf("bad maximum layer size %d", r.MaxLayerSize)
	}
	opts := append([]export.Option{export.WithCounters(r.Counters), export.WithCompat(r.Compat)}, r.Options...)
	o := export.NewOptions(opts...)
	if r.Runtime == "" {
		if r.Runtime, err = detectRuntime(r, o.DockerRoot); err != nil {
			return v1.Hash{}, err
		}
	}
	switch r.Runtime {
	case RuntimePodman:
		if r.Squash || r.MaxLayerSize > 0 {
			return v1.Hash{}, fmt.Errorf("--squash and --max-layer-size are not supported with --runtime podman yet")
		}
		return commitPodman(ctx, r)
	case RuntimeContainerd:
		return commitContainerd(ctx, r, opts)
	case RuntimeDocker:
		if r.Format != "" {
			return v1.Hash{}, fmt.Errorf("--format is podman commit's; docker commit writes Docker's format")
		}
	default:
		return v1.Hash{}, fmt.Errorf("unknown runtime %q (want docker, podman or containerd)", r.Runtime)
	}
	root, err := dockerroot.Open(o.DockerRoot)
	if err != nil {
		if croot, cerr := dockerroot.OpenContainerd(o.DockerRoot); cerr == nil {
			return commitDockerContainerd(ctx, r, croot, opts)
		}
		return v1.Hash{}, err
	}
	c, err := root.Container(r.Container)
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
	if r.From == "" {
		if base, err = root.Image(ctx, c.Image, r.Compat); err != nil {
			return v1.Hash{}, fmt.Errorf("image of container %s: %w", c.ID, err)
		}
		if !r.Squash {
			opts = append(opts, export.WithParent(c.Image))
		}
	} else if base, err = export.Open(ctx, r.From, opts...); err != nil {
		return v1.Hash{}, err
	}
	parent, err := base.RawConfigFile()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("reading base config: %w", err)
	}
	src := diff.Overlay(c.UpperDir, diff.WithLowers(c.Lowers...))
	if r.Squash {
		// Before the destination is touched: a base that cannot be read
		// leaves nothing behind.
		sq, release, err := squashSource(ctx, base, c.UpperDir, r.StateDir)
		if err != nil {
			return v1.Hash{}, fmt.Errorf("container %s: %w", c.ID, err)
		}
		defer release()
		src = sq
	}
	dest, err := export.NewDestination(ctx, r.To, opts...)
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
	if src, err = r.exclude(src); err != nil {
		return v1.Hash{}, err
	}
	ls, err := r.writeLayers(ctx, dest, src, true, r.MaxLayerSize)
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
	dv := r.Compat.DockerVersion
	if r.DockerVersion != nil {
		dv = *r.DockerVersion
	}
	ccfg := dockerroot.CommitConfig{
		ContainerID: c.ID, Container: containerCfg, Config: cfg, OS: c.OS,
		Author: r.Author, Comment: r.Comment, Created: created, DockerVersion: dv,
		DiffID: diff.EmptyDiffID, Empty: len(ls) == 0,
	}
	var below []v1.Hash // the split's lower parts
	for i, l := range ls {
		d, _ := l.DiffID()
		if i == len(ls)-1 {
			ccfg.DiffID = d
		} else {
			below = append(below, d)
		}
	}
	if ccfg.Parent, err = parentAsCommitted(parent, r.Squash, below, historyOf(ccfg)); err != nil {
		removeLayers(ls)
		return v1.Hash{}, err
	}
	raw, err := ccfg.Encode(r.Compat)
	if err != nil {
		removeLayers(ls)
		return v1.Hash{}, err
	}
	img, err := containerImage(base, ls, raw, r.Squash)
	if err != nil {
		removeLayers(ls)
		return v1.Hash{}, err
	}
	if err := dest.Write(ctx, img); err != nil {
		removeLayers(ls)
		return v1.Hash{}, fmt.Errorf("writing %s: %w", r.To, err)
	}
	sum := sha256.Sum256(raw)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}, nil
}

// historyOf is the history entry CommitConfig.Encode gives the new layer;
// a split's lower parts get the same.
func historyOf(c dockerroot.CommitConfig) v1.History {
	return v1.History{Created: v1.Time{Time: c.Created.UTC()}, Author: c.Author,
		CreatedBy: strings.Join(c.Container.Cmd, " "), Comment: c.Comment}
}

// parentAsCommitted is the base config raw as CommitConfig.Encode should
// see it below the new top layer: with squash, no history and no layers
// (the squashed layer holds them all); then the lower parts of a split
// change set (below, bottom first) appended to its layers, each with
// entry h, so that every new layer has a history entry of its own, as
// docker gives each layer one. Encode reads only the fields it takes from
// a parent, so the rest of raw is passed on as it was.
func parentAsCommitted(raw []byte, squash bool, below []v1.Hash, h v1.History) ([]byte, error) {
	if !squash && len(below) == 0 {
		return raw, nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, fmt.Errorf("reading base config: %w", err)
	}
	var hist []json.RawMessage
	var rootfs struct {
		Type    string    `json:"type"`
		DiffIDs []v1.Hash `json:"diff_ids"`
	}
	if !squash {
		if b, ok := top["history"]; ok {
			if err := json.Unmarshal(b, &hist); err != nil {
				return nil, fmt.Errorf("reading base history: %w", err)
			}
		}
		if b, ok := top["rootfs"]; ok {
			if err := json.Unmarshal(b, &rootfs); err != nil {
				return nil, fmt.Errorf("reading base rootfs: %w", err)
			}
		}
	}
	entry, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	for _, d := range below {
		hist = append(hist, entry)
		rootfs.DiffIDs = append(rootfs.DiffIDs, d)
	}
	rootfs.Type = "layers"
	for k, v := range map[string]any{"history": hist, "rootfs": rootfs} {
		if top[k], err = json.Marshal(v); err != nil {
			return nil, err
		}
	}
	return json.Marshal(top)
}

// containerImage is the committed image: base (scratch with Docker's
// media types, when squashed) with ls on top and raw as its config.
func containerImage(base v1.Image, ls []*layer.Layer, raw []byte, squash bool) (v1.Image, error) {
	if squash {
		base = image.Scratch(false)
	}
	top := make([]v1.Layer, len(ls))
	for i, l := range ls {
		top[i] = l
	}
	return image.WithRawConfigLayers(base, top, raw)
}
