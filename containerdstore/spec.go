package containerdstore

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// runtimeSpecURL is the type URL containerd records a container's OCI
// runtime spec under (typeurl's name for runtime-spec's Spec, which it
// marshals as JSON).
const runtimeSpecURL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"

// processArgs are the process arguments of a container's runtime spec as
// containerd stores it (core/metadata containers.go, key "spec"): a
// protobuf Any (type_url = 1, value = 2) whose value is the spec's JSON.
// The Any is decoded with protowire (two fields) rather than by
// importing containerd's generated types for it. A record without a spec,
// or a spec without a process, gives none.
func processArgs(raw []byte) ([]string, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	url, value, err := decodeAny(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: spec: %w", ErrCorrupt, err)
	}
	if url != runtimeSpecURL {
		return nil, fmt.Errorf("%w: spec has type %q", ErrCorrupt, url)
	}
	var spec struct {
		Process *struct {
			Args []string `json:"args"`
		} `json:"process"`
	}
	if err := json.Unmarshal(value, &spec); err != nil {
		return nil, fmt.Errorf("%w: spec: %w", ErrCorrupt, err)
	}
	if spec.Process == nil {
		return nil, nil
	}
	return spec.Process.Args, nil
}

// decodeAny reads a google.protobuf.Any's two fields.
func decodeAny(b []byte) (url string, value []byte, err error) {
	if len(b) == 0 {
		return "", nil, fmt.Errorf("no spec")
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", nil, protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return "", nil, protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return "", nil, protowire.ParseError(n)
		}
		b = b[n:]
		switch num {
		case 1:
			url = string(v)
		case 2:
			value = v
		}
	}
	return url, value, nil
}
