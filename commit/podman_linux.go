package commit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/containerdstore"
	"github.com/layercommit/layercommit/containersstorage"
	"github.com/layercommit/layercommit/dockerfile"
	"github.com/layercommit/layercommit/dockerroot"
	"github.com/layercommit/layercommit/export"
	"github.com/layercommit/layercommit/image"
	"github.com/layercommit/layercommit/layer"
)

// Runtimes a ContainerRequest names.
const (
	RuntimeDocker     = "docker"
	RuntimePodman     = "podman"
	RuntimeContainerd = "containerd"
)

// DefaultStorageRoots are podman's store and run root when none is named:
// root's, or the caller's own rootless store (containersstorage.DefaultRoots).
func DefaultStorageRoots() (root, runRoot string) { return containersstorage.DefaultRoots() }

// detectLockTimeout bounds detectRuntime's wait for the podman store.
const detectLockTimeout = 2 * time.Second

// detectRuntime is the runtime whose store holds ref when none is named:
// podman when only the containers-storage store has it, an error naming
// both stores when both do, docker otherwise (whose lookup then reports
// a container found nowhere).
func detectRuntime(r ContainerRequest, dockerRoot string) (string, error) {
	var found []string
	var where []string
	root, err := dockerroot.Open(dockerRoot)
	if err != nil {
		root, err = dockerroot.OpenContainerd(dockerRoot)
	}
	if err == nil {
		if _, err := root.Container(r.Container); err == nil {
			found, where = append(found, RuntimeDocker), append(where, "the Docker data root "+dockerRoot)
		}
	}
	if s, err := containersstorage.Open(r.storageRoot(), r.runRoot()); err == nil {
		// A store busy with a writer for long does not hold up a Docker
		// commit: it is taken as not holding the container.
		s.LockTimeout = detectLockTimeout
		if c, err := s.Container(r.Container); err == nil {
			found = append(found, RuntimePodman)
			where = append(where, fmt.Sprintf("the podman store %s (podman ID %.12s)", s.Root, c.ID))
		}
	}
	if s, err := containerdstore.Open(r.containerdRoot()); err == nil {
		if _, err := s.Container(r.namespace(), r.Container); err == nil {
			found = append(found, RuntimeContainerd)
			where = append(where, fmt.Sprintf("containerd's %s (namespace %s)", s.Root, r.namespace()))
		}
	}
	switch len(found) {
	case 0:
		// Docker's lookup then reports a container found nowhere.
		return RuntimeDocker, nil
	case 1:
		return found[0], nil
	}
	in := "both " + where[0] + " and " + where[1]
	if len(where) > 2 {
		in = strings.Join(where[:len(where)-1], ", ") + " and " + where[len(where)-1]
	}
	return "", fmt.Errorf("container %q is in %s: give --runtime %s", r.Container, in, strings.Join(found, " or --runtime "))
}

func (r ContainerRequest) containerdRoot() string {
	if r.ContainerdRoot != "" {
		return r.ContainerdRoot
	}
	return containerdstore.DefaultRoot
}

func (r ContainerRequest) namespace() string {
	if r.Namespace != "" {
		return r.Namespace
	}
	// ctr's default, as ../shared/CLI.md spells it; Kubernetes' CRI
	// uses k8s.io.
	return "default"
}

func (r ContainerRequest) storageRoot() string {
	if r.StorageRoot != "" {
		return r.StorageRoot
	}
	root, _ := DefaultStorageRoots()
	return root
}

func (r ContainerRequest) runRoot() string {
	if r.RunRoot != "" {
		return r.RunRoot
	}
	_, run := DefaultStorageRoots()
	return run
}

// podmanFrozen, when set (by tests), is called with the container's pid
// once its cgroup is frozen, before the upper dir is read.
var podmanFrozen func(pid int)

// inContainerCgroup reports whether pid still runs in the container's
// cgroup (libpod names it libpod-<id>, under cgroupfs or as a systemd
// scope), so that a pid recorded by libpod and since reused by another
// process is never frozen.
func inContainerCgroup(pid int, id string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	return err == nil && strings.Contains(string(b), "libpod-"+id)
}

// commitPodman commits a container of a containers-storage store as
// podman 4.3's podman commit does (--format oci, the default, or docker): the upper dir
// walked by containers-storage's overlay rules (profile podman-4 unless
// another is named) on the container's image, rebuilt from the store's
// tar-split, with the config libpod's database records merged by
// podman's rules (containersstorage.CommitConfig). A destination
// containers-storage:NAME[:TAG] is the container's own store, and so is
// a --from of that form. Nothing is written before the store, the
// libpod record and the base have been read.
func commitPodman(ctx context.Context, r ContainerRequest) (v1.Hash, error) {
	if r.StoreCompat {
		r.Compat = compat.Podman4
	}
	docker := false
	switch r.Format {
	case "", "oci":
	case "docker":
		docker = true
	default:
		return v1.Hash{}, fmt.Errorf("unknown --format %q (want oci or docker)", r.Format)
	}
	if r.Comment != "" && !docker {
		// podman commit -m with the default OCI format fails the same way.
		return v1.Hash{}, errors.New("messages are only compatible with the docker image format (--format docker)")
	}
	if r.DockerVersion != nil {
		return v1.Hash{}, errors.New("--docker-version does not apply to podman commits (podman writes no docker_version)")
	}
	s, err := containersstorage.Open(r.storageRoot(), r.runRoot())
	if err != nil {
		return v1.Hash{}, err
	}
	c, err := s.Container(r.Container)
	if err != nil {
		return v1.Hash{}, err
	}
	lc, err := s.Libpod(c.ID)
	if err != nil {
		return v1.Hash{}, err
	}
	changes, err := dockerfile.ApplyChanges(v1.Config{}, r.Changes)
	if err != nil {
		return v1.Hash{}, err
	}
	opts := append([]export.Option{export.WithCounters(r.Counters), export.WithCompat(r.Compat)}, r.Options...)
	var base v1.Image
	if name, ok := strings.CutPrefix(r.From, "containers-storage:"); ok {
		// A base from the container's store, by name or ID.
		id, err := s.ResolveImage(name)
		if err != nil {
			return v1.Hash{}, err
		}
		if base, err = s.Image(id); err != nil {
			return v1.Hash{}, fmt.Errorf("image %s: %w", name, err)
		}
	} else if r.From == "" {
		if base, err = s.Image(c.Image); err != nil {
			return v1.Hash{}, fmt.Errorf("image of container %s: %w", c.ID, err)
		}
	} else if base, err = export.Open(ctx, r.From, opts...); err != nil {
		return v1.Hash{}, err
	}
	baseID, err := base.ConfigName()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("reading base config: %w", err)
	}
	// The OCI format, podman commit's default: manifest, config and
	// layer media types. The store's images have Docker's.
	if !docker {
		if base, err = image.OCI(base); err != nil {
			return v1.Hash{}, err
		}
	}
	parent, err := base.RawConfigFile()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("reading base config: %w", err)
	}
	var dest export.Destination
	if name, ok := strings.CutPrefix(r.To, "containers-storage:"); ok {
		// Into the container's own store, as podman commit writes. The
		// store keeps layers unpacked: the blob is only a temp copy,
		// so it is not compressed.
		dest, err = s.Destination(name)
		r.Compression, r.Level = layer.None, nil
	} else {
		dest, err = export.NewDestination(ctx, r.To, opts...)
	}
	if err != nil {
		return v1.Hash{}, err
	}
	defer dest.Close()

	if pid := lc.State.Pid; r.Pause && lc.Running() && pid > 0 && inContainerCgroup(pid, c.ID) {
		thaw, err := dockerroot.Freeze(pid, c.ID)
		switch {
		case err == nil:
			defer thaw()
			if podmanFrozen != nil {
				podmanFrozen(pid)
			}
		case errors.Is(err, os.ErrNotExist):
			// The container exited since libpod recorded it running:
			// nothing runs to pause.
		default:
			return v1.Hash{}, fmt.Errorf("pausing container %s: %w", c.ID, err)
		}
	}
	src, err := r.exclude(containersstorage.ContainerChanges(c, r.Compat))
	if err != nil {
		return v1.Hash{}, err
	}
	l, err := r.writeLayer(ctx, dest, src, docker)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("container %s: %w", c.ID, err)
	}
	diffID, _ := l.DiffID()
	created := r.Created
	if t := r.created(); !t.IsZero() {
		created = t
	}
	if created.IsZero() {
		created = time.Now()
	}
	cc := containersstorage.CommitConfig{
		Parent: parent, Container: lc, Changes: changes, Author: r.Author, Created: created, DiffID: diffID,
		Comment: r.Comment, BaseID: baseID,
	}
	encode := cc.Encode
	if docker {
		encode = cc.EncodeDocker
	}
	raw, err := encode()
	if err != nil {
		l.Remove()
		return v1.Hash{}, err
	}
	// podman adds the layer even when the change set is empty.
	img, err := image.WithRawConfig(base, l, raw)
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
