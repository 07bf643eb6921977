package commit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/dockerroot"
	"github.com/layercommit/layercommit/export"
	"github.com/layercommit/layercommit/image"
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
	// Runtime is "docker", "podman" (a containers-storage store at
	// StorageRoot and RunRoot, podman_linux.go), or "" to take the one
	// store holding the container. StoreCompat: --compat was not given,
	// so the profile follows the store.
	Runtime, StorageRoot, RunRoot string
	StoreCompat                   bool
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
	opts := append([]export.Option{export.WithCounters(r.Counters), export.WithCompat(r.Compat)}, r.Options...)
	o := export.NewOptions(opts...)
	if r.Runtime == "" {
		if r.Runtime, err = detectRuntime(r, o.DockerRoot); err != nil {
			return v1.Hash{}, err
		}
	}
	switch r.Runtime {
	case RuntimePodman:
		return commitPodman(ctx, r)
	case RuntimeDocker:
		if r.Format != "" {
			return v1.Hash{}, fmt.Errorf("--format is podman commit's; docker commit writes Docker's format")
		}
	default:
		return v1.Hash{}, fmt.Errorf("unknown runtime %q (want docker or podman)", r.Runtime)
	}
	root, err := dockerroot.Open(o.DockerRoot)
	if err != nil {
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
		opts = append(opts, export.WithParent(c.Image))
	} else if base, err = export.Open(ctx, r.From, opts...); err != nil {
		return v1.Hash{}, err
	}
	parent, err := base.RawConfigFile()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("reading base config: %w", err)
	}
	dest, err := export.NewDestination(ctx, r.To, opts...)
	if err != nil {
		return v1.Hash{}, err
	}
	defer dest.Close()

	if r.Pause && c.Running && !c.Paused && c.Pid > 0 {
		thaw, err := dockerroot.Freeze(c.Pid)
		if err != nil {
			return v1.Hash{}, fmt.Errorf("pausing container %s: %w", c.ID, err)
		}
		defer thaw()
	}
	src, err := r.exclude(diff.Overlay(c.UpperDir, diff.WithLowers(c.Lowers...)))
	if err != nil {
		return v1.Hash{}, err
	}
	l, err := r.writeLayer(ctx, dest, src, true)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("container %s: %w", c.ID, err)
	}
	diffID, _ := l.DiffID()
	var top v1.Layer = l
	if l.Empty() {
		l.Remove()
		top = nil
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
	raw, err := dockerroot.CommitConfig{
		Parent: parent, ContainerID: c.ID, Container: containerCfg, Config: cfg, OS: c.OS,
		Author: r.Author, Comment: r.Comment, Created: created, DockerVersion: dv,
		DiffID: diffID, Empty: l.Empty(),
	}.Encode(r.Compat)
	if err != nil {
		l.Remove()
		return v1.Hash{}, err
	}
	img, err := image.WithRawConfig(base, top, raw)
	if err != nil {
		l.Remove()
		return v1.Hash{}, err
	}
	if err := dest.Write(ctx, img); err != nil {
		l.Remove()
		return v1.Hash{}, fmt.Errorf("writing %s: %w", r.To, err)
	}
	sum := sha256.Sum256(raw)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}, nil
}
