package buildcache

import (
	"fmt"
	"strings"
)

// Spec is one --cache-from or --cache-to value.
type Spec struct {
	// Type is "registry" or "local".
	Type string
	// Ref is the registry reference (type=registry), without docker://.
	Ref string
	// Dir is the layout dir: src= for --cache-from, dest= for --cache-to.
	Dir string
	// Max keeps every stage's steps (mode=max), not only the target's.
	Max bool
	// IgnoreError turns a failed export or import into a warning.
	IgnoreError bool
}

func (s Spec) String() string {
	if s.Type == "local" {
		return "local:" + s.Dir
	}
	return s.Ref
}

// ParseSpec parses a cache spec as buildx spells it:
// type=registry,ref=REF[,mode=min|max] or type=local,dest=DIR (to) /
// type=local,src=DIR (from); a value with no "=" is a registry ref.
// BuildKit's tuning keys (compression, oci-mediatypes, image-manifest...)
// are accepted and have no effect; any other key is refused.
func ParseSpec(v string, to bool) (Spec, error) {
	flag := "--cache-from"
	if to {
		flag = "--cache-to"
	}
	bad := func(format string, a ...any) (Spec, error) {
		return Spec{}, fmt.Errorf("bad %s %q: %s", flag, v, fmt.Sprintf(format, a...))
	}
	if v == "" {
		return bad("empty")
	}
	if !strings.Contains(v, "=") {
		v = "type=registry,ref=" + v
	}
	var s Spec
	for _, f := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(f, "=")
		if !ok {
			return bad("%q is not KEY=VALUE", f)
		}
		switch k {
		case "type":
			s.Type = val
		case "ref":
			s.Ref = strings.TrimPrefix(val, "docker://")
		case "src":
			if to {
				return bad("src= is for --cache-from (use dest=)")
			}
			s.Dir = val
		case "dest":
			if !to {
				return bad("dest= is for --cache-to (use src=)")
			}
			s.Dir = val
		case "mode":
			if !to {
				return bad("mode= is for --cache-to")
			}
			switch val {
			case "min":
			case "max":
				s.Max = true
			default:
				return bad("mode must be min or max")
			}
		case "ignore-error":
			s.IgnoreError = val == "true"
		case "compression", "compression-level", "force-compression", "oci-mediatypes", "image-manifest", "digest", "tag", "store":
		default:
			return bad("unknown key %q", k)
		}
	}
	switch s.Type {
	case "registry":
		if s.Ref == "" {
			return bad("type=registry needs ref=REF")
		}
		if s.Dir != "" {
			return bad("type=registry takes ref=, not src=/dest=")
		}
	case "local":
		if s.Dir == "" {
			if to {
				return bad("type=local needs dest=DIR")
			}
			return bad("type=local needs src=DIR")
		}
		if s.Ref != "" {
			return bad("type=local takes a dir, not ref=")
		}
	case "":
		return bad("type= missing (registry or local)")
	default:
		return bad("unsupported type %q (registry or local)", s.Type)
	}
	return s, nil
}
