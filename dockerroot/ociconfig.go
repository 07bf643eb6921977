package dockerroot

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker 29's containerd image store commits with its own encoders
// (moby v2 daemon/containerd image_commit.go generateCommitImageConfig
// and image_builder.go writeContentsForImage): the config is
// json.Marshal of docker-image-spec's DockerOCIImage (OCI key order, the
// Docker-only config last) and the manifest json.MarshalIndent with four
// spaces of an OCI manifest with its mediaType first. The image ID is the
// manifest's digest. We encode through the same public types
// (docker-image-spec and image-spec) so that their field order, tags and
// omitempty rules are exactly the daemon's.

// EncodeOCI writes the image config Docker 29's containerd image store
// writes for the commit c: the base config (c.Parent, read into the same
// type the daemon reads it into, so fields it does not know are dropped
// as it drops them) with c.DiffID appended unless c.Empty, the new
// history entry, c.Config's image fields, architecture and os from the
// base (the host's when it has none; the base's variant and os.version
// are not kept), and the base's author when c.Author is empty.
func (c CommitConfig) EncodeOCI() ([]byte, error) {
	var base dockerspec.DockerOCIImage
	if len(c.Parent) > 0 {
		if err := json.Unmarshal(c.Parent, &base); err != nil {
			return nil, fmt.Errorf("reading base config: %w", err)
		}
	}
	author := c.Author
	if author == "" {
		author = base.Author
	}
	created := c.Created
	arch, os := base.Architecture, base.OS
	if arch == "" {
		arch = runtime.GOARCH
	}
	if os == "" {
		os = runtime.GOOS
	}
	diffIDs := base.RootFS.DiffIDs
	if !c.Empty {
		diffIDs = append(diffIDs, digest.Digest(c.DiffID.String()))
	}
	img := dockerspec.DockerOCIImage{
		Image: ocispec.Image{
			Platform: ocispec.Platform{Architecture: arch, OS: os},
			Created:  &created,
			Author:   author,
			RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
			History: append(base.History, ocispec.History{
				Created:    &created,
				CreatedBy:  strings.Join(c.Container.Cmd, " "),
				Author:     author,
				Comment:    c.Comment,
				EmptyLayer: c.Empty,
			}),
		},
		Config: c.Config.imageConfigOCI(),
	}
	b, err := json.Marshal(img)
	if err != nil {
		return nil, fmt.Errorf("encoding image config: %w", err)
	}
	return b, nil
}

// imageConfigOCI is moby's containerConfigToDockerOCIImageConfig: the
// image fields of a container config.
func (c ContainerConfig) imageConfigOCI() dockerspec.DockerOCIImageConfig {
	oc := ocispec.ImageConfig{
		User:        c.User,
		Env:         c.Env,
		Entrypoint:  c.Entrypoint,
		Cmd:         c.Cmd,
		Volumes:     c.Volumes,
		WorkingDir:  c.WorkingDir,
		Labels:      c.Labels,
		StopSignal:  c.StopSignal,
		ArgsEscaped: c.ArgsEscaped, //nolint:staticcheck // the daemon keeps it
	}
	if len(c.ExposedPorts) > 0 {
		oc.ExposedPorts = map[string]struct{}{}
		for k := range c.ExposedPorts {
			oc.ExposedPorts[k] = struct{}{}
		}
	}
	ext := dockerspec.DockerOCIImageConfigExt{OnBuild: c.OnBuild, Shell: c.Shell}
	if h := c.Healthcheck; h != nil {
		ext.Healthcheck = &dockerspec.HealthcheckConfig{Test: h.Test, Interval: h.Interval, Timeout: h.Timeout,
			StartPeriod: h.StartPeriod, Retries: h.Retries}
	}
	return dockerspec.DockerOCIImageConfig{ImageConfig: oc, DockerOCIImageConfigExt: ext}
}

// ManifestOCI is the manifest Docker 29's containerd image store writes
// for a committed image: config (OCI config media type) and layers (the
// base manifest's descriptors as they were, then the new layer's).
func ManifestOCI(config []byte, layers []ocispec.Descriptor) ([]byte, error) {
	m := struct {
		MediaType string `json:"mediaType,omitempty"`
		ocispec.Manifest
	}{
		MediaType: ocispec.MediaTypeImageManifest,
		Manifest: ocispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2},
			Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig,
				Digest: digest.FromBytes(config), Size: int64(len(config))},
			Layers: layers,
		},
	}
	b, err := json.MarshalIndent(m, "", "    ")
	if err != nil {
		return nil, fmt.Errorf("encoding manifest: %w", err)
	}
	return b, nil
}

// EncodeContainerConfig29 is the container config blob Docker 29's
// containerd image store keeps beside a committed image (moby's
// saveContainerConfig: json.Marshal of the container's container.Config,
// Docker 29's field rules), which the image record and the config blob
// reference.
func EncodeContainerConfig29(c ContainerConfig) ([]byte, error) {
	b, err := json.Marshal(containerConfig29(c))
	if err != nil {
		return nil, fmt.Errorf("encoding container config: %w", err)
	}
	return b, nil
}
