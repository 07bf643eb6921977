package export

import (
	"encoding/csv"
	"fmt"
	"strings"
)

// ParseOutput turns one -o/--output value into destination references.
// A transport reference (../shared/CLI.md) is returned as it is. BuildKit's
// spelling, a CSV of KEY=VALUE with type=, maps as buildx's exporters do:
//
//	type=oci,dest=FILE[,name=N]        oci-archive:FILE[:N]   (tar=false: oci:DIR[:N])
//	type=docker,dest=FILE[,name=N]     docker-archive:FILE[:N]
//	type=docker[,name=N]               docker-daemon:N        (loaded into dockerd)
//	type=image[,name=N][,push=true]    local:N, and docker://N when pushed
//	type=registry,name=N               docker://N
//	type=local,dest=DIR                rootfs:DIR             (the final file system)
//	type=tar,dest=FILE                 rootfs-tar:FILE
//
// name= may list several names (quoted, comma-separated). BuildKit's
// tuning keys (compression, oci-mediatypes, annotation..., ...) are
// accepted and have no effect; other keys, dest=- (stdout) and a missing
// dest or name are refused.
func ParseOutput(v string) ([]string, error) {
	if !strings.HasPrefix(v, "type=") && !strings.Contains(v, ",type=") {
		return []string{v}, nil
	}
	bad := func(format string, a ...any) ([]string, error) {
		return nil, fmt.Errorf("bad --output %q: %s", v, fmt.Sprintf(format, a...))
	}
	fields, err := csv.NewReader(strings.NewReader(v)).Read()
	if err != nil {
		return bad("%v", err)
	}
	kv := map[string]string{}
	for _, f := range fields {
		k, val, ok := strings.Cut(f, "=")
		if !ok {
			return bad("%q is not KEY=VALUE", f)
		}
		k = strings.ToLower(strings.TrimSpace(k))
		switch {
		case k == "type", k == "dest", k == "name", k == "push", k == "tar":
			kv[k] = val
		case k == "compression", k == "compression-level", k == "force-compression", k == "oci-mediatypes",
			k == "oci-artifact", k == "rewrite-timestamp", k == "buildinfo", k == "unpack", k == "store",
			k == "name-canonical", k == "dangling-name-prefix", k == "platform-split", k == "push-by-digest",
			k == "insecure", k == "registry.insecure", strings.HasPrefix(k, "annotation"):
		default:
			return bad("unknown key %q", k)
		}
	}
	if kv["dest"] == "-" {
		return bad("dest=- (stdout) is not supported")
	}
	var names []string
	for _, n := range strings.Split(kv["name"], ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	push := kv["push"] == "true"
	need := func(k string) error {
		if kv[k] == "" {
			return fmt.Errorf("bad --output %q: type=%s needs %s=", v, kv["type"], k)
		}
		return nil
	}
	var refs []string
	withName := func(prefix string) {
		if len(names) > 0 {
			prefix += ":" + names[0]
		}
		refs = append(refs, prefix)
	}
	switch kv["type"] {
	case "oci":
		if err := need("dest"); err != nil {
			return nil, err
		}
		if kv["tar"] == "false" {
			withName("oci:" + kv["dest"])
		} else {
			withName("oci-archive:" + kv["dest"])
		}
	case "docker":
		if kv["dest"] != "" {
			withName("docker-archive:" + kv["dest"])
		} else {
			if len(names) == 0 {
				return bad("type=docker without dest= loads into dockerd and needs name=")
			}
			for _, n := range names {
				refs = append(refs, "docker-daemon:"+n)
			}
		}
	case "image":
		if len(names) == 0 {
			if push {
				return bad("push=true needs name=")
			}
			refs = append(refs, "local:")
		}
		for _, n := range names {
			if push {
				refs = append(refs, "docker://"+n)
			} else {
				refs = append(refs, "local:"+n)
			}
		}
	case "registry":
		if err := need("name"); err != nil {
			return nil, err
		}
		for _, n := range names {
			refs = append(refs, "docker://"+n)
		}
	case "local":
		if err := need("dest"); err != nil {
			return nil, err
		}
		refs = append(refs, "rootfs:"+kv["dest"])
	case "tar":
		if err := need("dest"); err != nil {
			return nil, err
		}
		refs = append(refs, "rootfs-tar:"+kv["dest"])
	case "":
		return bad("type= missing")
	default:
		return bad("unsupported type %q (oci, docker, image, registry, local or tar)", kv["type"])
	}
	return refs, nil
}
