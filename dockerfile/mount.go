package dockerfile

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/docker/go-units"
	"github.com/tonistiigi/go-csvvalue"
)

// Mount is one RUN --mount, parsed with BuildKit's rules
// (frontend/dockerfile/instructions, commands_runmount.go): the CSV
// fields, their aliases, defaults and refusals are BuildKit's.
type Mount struct {
	Type     string // bind (default), cache, tmpfs, secret or ssh
	From     string
	Source   string
	Target   string
	ReadOnly bool
	// SizeLimit is tmpfs's size in bytes (0: unset).
	SizeLimit int64
	// ID is the cache, secret or ssh id ("id=").
	ID       string
	Sharing  string // shared, private or locked; "" for shared
	Required bool
	// Env names the environment variable of a secret (nil: none).
	Env            *string
	Mode, UID, GID *uint64
}

var (
	mountTypes   = []string{"bind", "cache", "tmpfs", "secret", "ssh"}
	sharingModes = []string{"shared", "private", "locked"}
)

// ParseMount parses one --mount value, expanding each value with expand
// (as BuildKit expands them with the stage's variables when the RUN
// runs). A nil expand only checks what can be checked before expansion:
// keys without values and variables in from=.
func ParseMount(val string, expand func(string) (string, error)) (*Mount, error) {
	fields, err := csvvalue.Fields(val, nil)
	if err != nil {
		return nil, fmt.Errorf("failed to parse csv mounts: %w", err)
	}
	m := &Mount{Type: "bind"}
	roAuto := true
	for _, field := range fields {
		key, value, ok := strings.Cut(field, "=")
		key = strings.ToLower(key)
		if !ok {
			if expand == nil {
				continue
			}
			switch key {
			case "readonly", "ro":
				m.ReadOnly, roAuto = true, false
				continue
			case "readwrite", "rw":
				m.ReadOnly, roAuto = false, false
				continue
			case "required":
				if m.Type == "secret" || m.Type == "ssh" {
					m.Required = true
					continue
				}
				return nil, fmt.Errorf("unexpected key '%s' for mount type '%s'", key, m.Type)
			default:
				return nil, fmt.Errorf("invalid field '%s' must be a key=value pair", field)
			}
		}
		if expand != nil {
			if value, err = expand(value); err != nil {
				return nil, err
			}
		} else if key == "from" {
			if i := strings.IndexByte(value, '$'); i != -1 && i != len(value)-1 {
				return nil, fmt.Errorf("'%s' doesn't support variable expansion, define alias stage instead", key)
			}
			continue
		} else {
			continue
		}
		parseBool := func() (bool, error) {
			b, err := strconv.ParseBool(value)
			if err != nil {
				return false, fmt.Errorf("invalid value for %s: %s", key, value)
			}
			return b, nil
		}
		parseUint := func(base int) (*uint64, error) {
			n, err := strconv.ParseUint(value, base, 32)
			if err != nil {
				return nil, fmt.Errorf("invalid value %s for %s", value, key)
			}
			return &n, nil
		}
		switch key {
		case "type":
			v := strings.ToLower(value)
			if !contains(mountTypes, v) {
				return nil, fmt.Errorf("unsupported mount type %q", value)
			}
			m.Type = v
		case "from":
			m.From = value
		case "source", "src":
			m.Source = value
		case "target", "dst", "destination":
			m.Target = value
		case "readonly", "ro":
			if m.ReadOnly, err = parseBool(); err != nil {
				return nil, err
			}
			roAuto = false
		case "readwrite", "rw":
			rw, err := parseBool()
			if err != nil {
				return nil, err
			}
			m.ReadOnly, roAuto = !rw, false
		case "required":
			if m.Type != "secret" && m.Type != "ssh" {
				return nil, fmt.Errorf("unexpected key '%s' for mount type '%s'", key, m.Type)
			}
			if m.Required, err = parseBool(); err != nil {
				return nil, err
			}
		case "size":
			if m.Type != "tmpfs" {
				return nil, fmt.Errorf("unexpected key '%s' for mount type '%s'", key, m.Type)
			}
			if m.SizeLimit, err = units.RAMInBytes(value); err != nil {
				return nil, fmt.Errorf("invalid value for %s: %s", key, value)
			}
		case "id":
			m.ID = value
		case "sharing":
			v := strings.ToLower(value)
			if !contains(sharingModes, v) {
				return nil, fmt.Errorf("unsupported sharing value %q", value)
			}
			m.Sharing = v
		case "mode":
			if m.Mode, err = parseUint(8); err != nil {
				return nil, err
			}
		case "uid":
			if m.UID, err = parseUint(10); err != nil {
				return nil, err
			}
		case "gid":
			if m.GID, err = parseUint(10); err != nil {
				return nil, err
			}
		case "env":
			m.Env = &value
		default:
			return nil, fmt.Errorf("unexpected key '%s' in '%s'", key, field)
		}
	}
	if expand == nil {
		return m, nil
	}
	if m.Type != "secret" && m.Type != "ssh" && m.Type != "cache" {
		for _, f := range []struct {
			name string
			v    *uint64
		}{{"mode", m.Mode}, {"uid", m.UID}, {"gid", m.GID}} {
			if f.v != nil {
				return nil, fmt.Errorf("%s not allowed for %q type mounts", f.name, m.Type)
			}
		}
	}
	if roAuto {
		m.ReadOnly = m.Type != "cache" && m.Type != "tmpfs"
	}
	if m.Type == "secret" {
		switch {
		case m.From != "":
			return nil, errors.New("secret mount should not have a from")
		case m.Sharing != "":
			return nil, errors.New("secret mount should not define sharing")
		case m.Source == "" && m.Target == "" && m.ID == "":
			return nil, errors.New("invalid secret mount. one of source, target required")
		case m.Source != "" && m.ID != "":
			return nil, errors.New("both source and id can't be set")
		}
	}
	if m.Sharing != "" && m.Type != "cache" {
		return nil, fmt.Errorf("invalid cache sharing set for %v mount", m.Type)
	}
	return m, nil
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
