package containersstorage

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/dockerroot"
)

// CommitConfig is what podman 4.3's commit (libpod's Container.Commit
// over buildah's import builder, default --format oci) takes into the new
// image config.
type CommitConfig struct {
	// Parent is the base image's config as stored (Docker or OCI JSON).
	Parent []byte
	// Container is libpod's record of the container.
	Container *LibpodContainer
	// Changes are the --change instructions parsed onto an empty config
	// (dockerfile.ApplyChanges): podman applies each field given by its
	// own rule (see Encode).
	Changes v1.Config
	Author  string
	Created time.Time
	// DiffID is the new layer's; podman always adds it, even when the
	// change set is empty.
	DiffID v1.Hash
	// Docker picks podman commit -f docker's format (EncodeDocker takes
	// it; Encode ignores it). Comment (-m) and BaseID (the base image's
	// ID, the config's parent) are used only there.
	Comment string
	BaseID  v1.Hash
}

// createdBy is the history created_by podman 4.3 commit writes whatever
// the container ran: buildah's import builder has no command of its own
// and reports /bin/sh (seen in every podman 4.3.1 commit).
const createdBy = "/bin/sh"

// Encode returns the OCI image config podman commit writes (EncodeDocker
// with -f docker): the base's
// config converted to OCI's image config (Docker-only keys dropped), then
// in libpod's order: Entrypoint then Cmd from the container (replaced
// even when empty), each variable of the container's process environment
// set (an existing one removed, the new one appended, as buildah's
// SetEnv), exposed ports and port mappings, labels added, User when the
// container has one, the anonymous volumes given to podman run, the
// process cwd as WorkingDir; then the changes: USER, WORKDIR, STOPSIGNAL (as
// its number),
// ENTRYPOINT and CMD replace when given, EXPOSE, ENV, VOLUME and LABEL
// add (ONBUILD is dropped: the OCI format has no field for it). The
// author goes into the config and the new history entry; the entry is
// created_by /bin/sh with the comment "FROM <image name>". The JSON is
// encoding/json's of image-spec's Image, as buildah marshals it.
func (c CommitConfig) Encode() ([]byte, error) {
	img, err := c.merge()
	if err != nil {
		return nil, err
	}
	return json.Marshal(img)
}

// merge applies podman's rules to the base's config as OCI's.
func (c CommitConfig) merge() (*ocispec.Image, error) {
	var img ocispec.Image
	if err := json.Unmarshal(c.Parent, &img); err != nil {
		return nil, fmt.Errorf("reading base config: %w", err)
	}
	ct := c.Container
	cfg := &img.Config
	cfg.Entrypoint = copyList(ct.Entrypoint)
	cfg.Cmd = copyList(ct.Command)
	if ct.Spec.Process != nil {
		for _, e := range ct.Spec.Process.Env {
			k, v, _ := strings.Cut(e, "=")
			setEnv(cfg, k, v)
		}
	}
	for _, p := range ct.PortMappings {
		setPort(cfg, fmt.Sprintf("%d/%s", p.ContainerPort, p.Protocol))
	}
	ports := make([]int, 0, len(ct.ExposedPorts))
	for p := range ct.ExposedPorts {
		ports = append(ports, int(p))
	}
	sort.Ints(ports)
	for _, p := range ports {
		for _, proto := range ct.ExposedPorts[uint16(p)] {
			setPort(cfg, fmt.Sprintf("%d/%s", p, proto))
		}
	}
	for k, v := range ct.Labels {
		setLabel(cfg, k, v)
	}
	if ct.User != "" {
		cfg.User = ct.User
	}
	for _, v := range ct.NamedVolumes {
		if ct.AnonVolumes[v.Dest] && contains(ct.UserVolumes, v.Dest) {
			addVolume(cfg, v.Dest)
		}
	}
	if ct.Spec.Process != nil {
		cfg.WorkingDir = ct.Spec.Process.Cwd
	}

	ch := c.Changes
	if ch.User != "" {
		cfg.User = ch.User
	}
	for p := range ch.ExposedPorts {
		setPort(cfg, p)
	}
	for _, e := range ch.Env {
		k, v, _ := strings.Cut(e, "=")
		setEnv(cfg, k, v)
	}
	if len(ch.Entrypoint) > 0 {
		cfg.Entrypoint = copyList(ch.Entrypoint)
	}
	if len(ch.Cmd) > 0 {
		cfg.Cmd = copyList(ch.Cmd)
	}
	for v := range ch.Volumes {
		addVolume(cfg, v)
	}
	if ch.WorkingDir != "" {
		cfg.WorkingDir = ch.WorkingDir
	}
	for k, v := range ch.Labels {
		setLabel(cfg, k, v)
	}
	if ch.StopSignal != "" {
		n, err := signalNumber(ch.StopSignal)
		if err != nil {
			return nil, err
		}
		cfg.StopSignal = strconv.Itoa(n)
	}

	created := c.Created.UTC()
	img.Created = &created
	if c.Author != "" {
		img.Author = c.Author
	}
	img.RootFS.Type = "layers"
	img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, digestOf(c.DiffID))
	img.History = append(img.History, ocispec.History{
		Created: &created, CreatedBy: createdBy, Author: img.Author, Comment: "FROM " + ct.ImageName,
	})
	return &img, nil
}

// dockerImage is buildah's docker.V2Image (its V1Image embedded) in its
// field order: the format podman commit -f docker writes.
type dockerImage struct {
	Comment         string                      `json:"comment,omitempty"`
	Created         time.Time                   `json:"created"`
	Container       string                      `json:"container,omitempty"`
	ContainerConfig dockerroot.ContainerConfig  `json:"container_config,omitempty"`
	DockerVersion   string                      `json:"docker_version,omitempty"`
	Author          string                      `json:"author,omitempty"`
	Config          *dockerroot.ContainerConfig `json:"config,omitempty"`
	Architecture    string                      `json:"architecture,omitempty"`
	Variant         string                      `json:"variant,omitempty"`
	OS              string                      `json:"os,omitempty"`
	Parent          string                      `json:"parent,omitempty"`
	RootFS          *struct {
		Type    string    `json:"type"`
		DiffIDs []v1.Hash `json:"diff_ids,omitempty"`
	} `json:"rootfs,omitempty"`
	History    []dockerHistory `json:"history,omitempty"`
	OSVersion  string          `json:"os.version,omitempty"`
	OSFeatures []string        `json:"os.features,omitempty"`
}

type dockerHistory struct {
	Created    time.Time `json:"created"`
	Author     string    `json:"author,omitempty"`
	CreatedBy  string    `json:"created_by,omitempty"`
	Comment    string    `json:"comment,omitempty"`
	EmptyLayer bool      `json:"empty_layer,omitempty"`
}

// EncodeDocker returns the Docker-format config podman commit -f docker
// writes: the fields Encode merges, in the base's Docker config (the
// keys only Docker has kept, docker_version dropped), Image the base's
// name, container_config a copy of config, ONBUILD changes appended, the
// container's ID, the message as comment (else the base's stays) and
// the base image's ID as parent.
func (c CommitConfig) EncodeDocker() ([]byte, error) {
	m, err := c.merge()
	if err != nil {
		return nil, err
	}
	var img dockerImage
	if err := json.Unmarshal(c.Parent, &img); err != nil {
		return nil, fmt.Errorf("reading base config: %w", err)
	}
	cfg := dockerroot.ContainerConfig{}
	if img.Config != nil {
		cfg = *img.Config
	}
	oc := m.Config
	cfg.User, cfg.ExposedPorts, cfg.Env, cfg.Entrypoint, cfg.Cmd = oc.User, oc.ExposedPorts, oc.Env, oc.Entrypoint, oc.Cmd
	cfg.Volumes, cfg.WorkingDir, cfg.Labels, cfg.StopSignal = oc.Volumes, oc.WorkingDir, oc.Labels, oc.StopSignal
	cfg.Image = c.Container.ImageName
	cfg.OnBuild = append(copyList(cfg.OnBuild), c.Changes.OnBuild...)
	img.Config = &cfg
	img.ContainerConfig = cfg
	img.Container = c.Container.ID
	img.DockerVersion = ""
	if c.Comment != "" {
		img.Comment = c.Comment
	}
	img.Author = m.Author
	img.Created = *m.Created
	img.Parent = ""
	if c.BaseID.Hex != "" {
		img.Parent = c.BaseID.String()
	}
	img.RootFS = &struct {
		Type    string    `json:"type"`
		DiffIDs []v1.Hash `json:"diff_ids,omitempty"`
	}{Type: "layers"}
	for _, d := range m.RootFS.DiffIDs {
		h, err := v1.NewHash(string(d))
		if err != nil {
			return nil, err
		}
		img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, h)
	}
	img.History = img.History[:0]
	for _, h := range m.History {
		dh := dockerHistory{Author: h.Author, CreatedBy: h.CreatedBy, Comment: h.Comment, EmptyLayer: h.EmptyLayer}
		if h.Created != nil {
			dh.Created = *h.Created
		}
		img.History = append(img.History, dh)
	}
	return json.Marshal(img)
}

// signalNumber is a STOPSIGNAL value as libimage stores it: podman
// parses the name (with or without SIG, any case) or number and writes
// the number.
func signalNumber(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return n, nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if n := unix.SignalNum(name); n != 0 {
		return int(n), nil
	}
	return 0, fmt.Errorf("STOPSIGNAL %q: unknown signal", s)
}

func copyList(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string{}, s...)
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// setEnv is buildah's SetEnv: drop k's entries, append k=v.
func setEnv(cfg *ocispec.ImageConfig, k, v string) {
	n := []string{}
	for _, e := range cfg.Env {
		if !strings.HasPrefix(e, k+"=") {
			n = append(n, e)
		}
	}
	cfg.Env = append(n, k+"="+v)
}

func setPort(cfg *ocispec.ImageConfig, p string) {
	if cfg.ExposedPorts == nil {
		cfg.ExposedPorts = map[string]struct{}{}
	}
	cfg.ExposedPorts[p] = struct{}{}
}

func setLabel(cfg *ocispec.ImageConfig, k, v string) {
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	cfg.Labels[k] = v
}

func addVolume(cfg *ocispec.ImageConfig, v string) {
	if cfg.Volumes == nil {
		cfg.Volumes = map[string]struct{}{}
	}
	cfg.Volumes[v] = struct{}{}
}

func digestOf(h v1.Hash) digest.Digest { return digest.Digest(h.String()) }
