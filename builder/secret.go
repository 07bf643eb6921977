package builder

import (
	"fmt"
	"os"
	"strings"

	"github.com/tonistiigi/go-csvvalue"
)

// ReadSecret reads one --secret value as buildctl and docker buildx spell
// it: id=ID with src=FILE (or source=), env=VAR, and type=file|env; with
// neither src nor env, the variable named ID when set, else the file
// named ID. getenv is the caller's environment (the library reads none).
func ReadSecret(spec string, getenv func(string) (string, bool)) (id string, value []byte, err error) {
	fields, err := csvvalue.Fields(spec, nil)
	if err != nil {
		return "", nil, fmt.Errorf("bad --secret %q: %w", spec, err)
	}
	typ, src, env := "", "", ""
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return "", nil, fmt.Errorf("bad --secret %q: %q is not KEY=VALUE", spec, f)
		}
		switch strings.ToLower(k) {
		case "type":
			if v != "file" && v != "env" {
				return "", nil, fmt.Errorf("bad --secret %q: unsupported type %q", spec, v)
			}
			typ = v
		case "id":
			id = v
		case "source", "src":
			src = v
		case "env":
			env = v
		default:
			return "", nil, fmt.Errorf("bad --secret %q: unexpected key %q", spec, k)
		}
	}
	if id == "" {
		return "", nil, fmt.Errorf("bad --secret %q: id= is required", spec)
	}
	if typ == "env" && env == "" {
		env, src = src, ""
	}
	if src == "" && env == "" {
		if _, ok := getenv(id); ok && typ != "file" {
			env = id
		} else {
			src = id
		}
	}
	if env != "" {
		v, ok := getenv(env)
		if !ok {
			return "", nil, fmt.Errorf("secret %s: environment variable %s is not set", id, env)
		}
		return id, []byte(v), nil
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return "", nil, fmt.Errorf("secret %s: %w", id, err)
	}
	return id, b, nil
}
