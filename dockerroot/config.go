package dockerroot

import (
	"bytes"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/compat"
)

// ContainerConfig is Docker's container.Config with its field order,
// JSON names and omitempty rules (Docker 20.10), so that a config decoded
// from the data root encodes back to the same bytes.
type ContainerConfig struct {
	Hostname        string
	Domainname      string
	User            string
	AttachStdin     bool
	AttachStdout    bool
	AttachStderr    bool
	ExposedPorts    map[string]struct{} `json:",omitempty"`
	Tty             bool
	OpenStdin       bool
	StdinOnce       bool
	Env             []string
	Cmd             []string
	Healthcheck     *HealthConfig `json:",omitempty"`
	ArgsEscaped     bool          `json:",omitempty"`
	Image           string
	Volumes         map[string]struct{}
	WorkingDir      string
	Entrypoint      []string
	NetworkDisabled bool   `json:",omitempty"`
	MacAddress      string `json:",omitempty"`
	OnBuild         []string
	Labels          map[string]string
	StopSignal      string   `json:",omitempty"`
	StopTimeout     *int     `json:",omitempty"`
	Shell           []string `json:",omitempty"`
}

// containerConfig29 is ContainerConfig as Docker 29 encodes it: the same
// fields, OnBuild omitted when empty. A ContainerConfig converts to it.
type containerConfig29 struct {
	Hostname        string
	Domainname      string
	User            string
	AttachStdin     bool
	AttachStdout    bool
	AttachStderr    bool
	ExposedPorts    map[string]struct{} `json:",omitempty"`
	Tty             bool
	OpenStdin       bool
	StdinOnce       bool
	Env             []string
	Cmd             []string
	Healthcheck     *HealthConfig `json:",omitempty"`
	ArgsEscaped     bool          `json:",omitempty"`
	Image           string
	Volumes         map[string]struct{}
	WorkingDir      string
	Entrypoint      []string
	NetworkDisabled bool     `json:",omitempty"`
	MacAddress      string   `json:",omitempty"`
	OnBuild         []string `json:",omitempty"`
	Labels          map[string]string
	StopSignal      string   `json:",omitempty"`
	StopTimeout     *int     `json:",omitempty"`
	Shell           []string `json:",omitempty"`
}

// encode gives c the field rules of profile p's Docker.
func (c ContainerConfig) encode(p compat.Profile) any {
	if p.OmitEmptyOnBuild {
		return containerConfig29(c)
	}
	return c
}

// HealthConfig is Docker's container.HealthConfig.
type HealthConfig struct {
	Test        []string      `json:",omitempty"`
	Interval    time.Duration `json:",omitempty"`
	Timeout     time.Duration `json:",omitempty"`
	StartPeriod time.Duration `json:",omitempty"`
	Retries     int           `json:",omitempty"`
}

// history20 is Docker 20.10-24's image.History.
type history20 struct {
	Created    time.Time `json:"created"`
	Author     string    `json:"author,omitempty"`
	CreatedBy  string    `json:"created_by,omitempty"`
	Comment    string    `json:"comment,omitempty"`
	EmptyLayer bool      `json:"empty_layer,omitempty"`
}

// historyOCI is the OCI History type Docker 25+ uses.
type historyOCI struct {
	Created    *time.Time `json:"created,omitempty"`
	CreatedBy  string     `json:"created_by,omitempty"`
	Author     string     `json:"author,omitempty"`
	Comment    string     `json:"comment,omitempty"`
	EmptyLayer bool       `json:"empty_layer,omitempty"`
}

// History is one history entry, independent of key order.
type History struct {
	Created    *time.Time
	Author     string
	CreatedBy  string
	Comment    string
	EmptyLayer bool
}

func (h *History) UnmarshalJSON(b []byte) error {
	var o historyOCI
	if err := json.Unmarshal(b, &o); err != nil {
		return err
	}
	*h = History{Created: o.Created, Author: o.Author, CreatedBy: o.CreatedBy, Comment: o.Comment, EmptyLayer: o.EmptyLayer}
	return nil
}

func (h History) encode(p compat.Profile) any {
	if p.HistoryAuthorFirst {
		o := history20{Author: h.Author, CreatedBy: h.CreatedBy, Comment: h.Comment, EmptyLayer: h.EmptyLayer}
		if h.Created != nil {
			o.Created = *h.Created
		}
		return o
	}
	return historyOCI{Created: h.Created, CreatedBy: h.CreatedBy, Author: h.Author, Comment: h.Comment, EmptyLayer: h.EmptyLayer}
}

// parentConfig is what a commit takes from the base image's config.
type parentConfig struct {
	Architecture string    `json:"architecture"`
	Variant      string    `json:"variant"`
	OSVersion    string    `json:"os.version"`
	OSFeatures   []string  `json:"os.features"`
	History      []History `json:"history"`
	RootFS       struct {
		DiffIDs []v1.Hash `json:"diff_ids"`
	} `json:"rootfs"`
}

// CommitConfig is the input of Commit's config.
type CommitConfig struct {
	// Parent is the base image's raw config; nil for scratch.
	Parent []byte
	// ContainerID and Container are the committed container's ID and
	// stored config (container_config, untouched by changes).
	ContainerID string
	Container   ContainerConfig
	// Config is the new image's config: the container's with --change
	// applied and merged (see image.CommitConfig).
	Config        ContainerConfig
	OS            string
	Author        string
	Comment       string
	Created       time.Time
	DockerVersion string
	// DiffID is the new layer's; diff.EmptyDiffID adds no layer and an
	// empty_layer history entry.
	DiffID v1.Hash
	Empty  bool
}

// Encode writes the image config exactly as dockerd's commit writes it
// for profile p: top-level keys sorted, nested keys in Docker's struct
// order, Go's JSON escaping (with \u0008 and \u000c for Go 1.21 and
// older builds).
func (c CommitConfig) Encode(p compat.Profile) ([]byte, error) {
	var parent parentConfig
	if len(c.Parent) > 0 {
		if err := json.Unmarshal(c.Parent, &parent); err != nil {
			return nil, fmt.Errorf("reading base config: %w", err)
		}
	}
	created := c.Created.UTC()
	top := map[string]any{}
	arch := parent.Architecture
	if arch == "" {
		arch = runtime.GOARCH
	}
	top["architecture"] = arch
	if c.Author != "" {
		top["author"] = c.Author
	}
	top["config"] = c.Config.encode(p)
	if c.ContainerID != "" {
		top["container"] = c.ContainerID
	}
	top["container_config"] = c.Container.encode(p)
	top["created"] = created
	if c.DockerVersion != "" {
		top["docker_version"] = c.DockerVersion
	}
	hist := make([]any, 0, len(parent.History)+1)
	for _, h := range parent.History {
		hist = append(hist, h.encode(p))
	}
	hist = append(hist, History{Created: &created, Author: c.Author, CreatedBy: strings.Join(c.Container.Cmd, " "), Comment: c.Comment, EmptyLayer: c.Empty}.encode(p))
	top["history"] = hist
	if c.OS != "" {
		top["os"] = c.OS
	}
	if len(parent.OSFeatures) > 0 {
		top["os.features"] = parent.OSFeatures
	}
	if parent.OSVersion != "" {
		top["os.version"] = parent.OSVersion
	}
	diffIDs := append([]v1.Hash{}, parent.RootFS.DiffIDs...)
	if !c.Empty {
		diffIDs = append(diffIDs, c.DiffID)
	}
	rootfs := struct {
		Type    string    `json:"type"`
		DiffIDs []v1.Hash `json:"diff_ids,omitempty"`
	}{"layers", diffIDs}
	top["rootfs"] = rootfs
	if parent.Variant != "" {
		top["variant"] = parent.Variant
	}
	b, err := json.Marshal(top)
	if err != nil {
		return nil, fmt.Errorf("encoding image config: %w", err)
	}
	if p.LegacyJSONEscapes {
		b = legacyEscapes(b)
	}
	return b, nil
}

// legacyEscapes rewrites the \b and \f escapes Go 1.22+ writes to the
// \u0008 and \u000c older Go wrote. Only escapes inside strings are
// touched: a backslash is always the start of an escape in JSON.
func legacyEscapes(b []byte) []byte {
	if !bytes.Contains(b, []byte(`\b`)) && !bytes.Contains(b, []byte(`\f`)) {
		return b
	}
	var out bytes.Buffer
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 == len(b) {
			out.WriteByte(b[i])
			continue
		}
		switch b[i+1] {
		case 'b':
			out.WriteString(`\u0008`)
		case 'f':
			out.WriteString(`\u000c`)
		default:
			out.Write(b[i : i+2])
		}
		i++
	}
	return out.Bytes()
}
