package containerdstore

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protowire"
)

// runtimeSpecURL is the type URL containerd records a container's OCI
// runtime spec under (typeurl's name for runtime-spec's Spec, which it
// marshals as JSON).
const runtimeSpecURL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"

// ContainerProcess returns the process arguments, environment and
// working dir of the container record id in ns, from its runtime spec:
// containerd stores it (core/metadata containers.go, key "spec") as a
// protobuf Any (type_url = 1, value = 2) whose value is the spec's JSON.
// The Any is decoded with protowire (two fields) rather than by
// importing containerd's generated types for it.
func (s *Store) ContainerProcess(ns, id string) (args, env []string, cwd string, err error) {
	var raw []byte
	err = view(s.metaDB(), func(tx *bolt.Tx) error {
		nsb, err := namespaceBucket(tx, s.Root, ns)
		if err != nil {
			return err
		}
		cb := bucket2(nsb, keyContainers, []byte(id))
		if cb == nil {
			return notFound(tx, "container", id, ns, func(b *bolt.Bucket) bool { return bucket2(b, keyContainers, []byte(id)) != nil })
		}
		raw = append([]byte(nil), cb.Get([]byte("spec"))...)
		return nil
	})
	if err != nil {
		return nil, nil, "", fmt.Errorf("reading container %s in %s: %w", id, s.Root, err)
	}
	url, value, err := decodeAny(raw)
	if err != nil {
		return nil, nil, "", fmt.Errorf("%w: container %s spec: %w", ErrCorrupt, id, err)
	}
	if url != runtimeSpecURL {
		return nil, nil, "", fmt.Errorf("%w: container %s spec has type %q", ErrCorrupt, id, url)
	}
	var spec struct {
		Process *struct {
			Args []string `json:"args"`
			Env  []string `json:"env"`
			Cwd  string   `json:"cwd"`
		} `json:"process"`
	}
	if err := json.Unmarshal(value, &spec); err != nil {
		return nil, nil, "", fmt.Errorf("%w: container %s spec: %w", ErrCorrupt, id, err)
	}
	if spec.Process == nil {
		return nil, nil, "", nil
	}
	return spec.Process.Args, spec.Process.Env, spec.Process.Cwd, nil
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
