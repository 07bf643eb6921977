package builder

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layercommit/layercommit/internal/oracle"
)

// TestBuildKitArgsRefused: BUILDKIT_* build args whose effect layercommit
// does not have (another frontend, an index for one platform, cache
// namespaces, the removed BUILDKIT_DISABLE_FILEOP) and bad lint options
// fail before anything is built, with one line naming the arg.
func TestBuildKitArgsRefused(t *testing.T) {
	oracle.Root(t)
	for _, tc := range []struct {
		name, arg, value, want string
	}{
		{"foreign-syntax", "BUILDKIT_SYNTAX", "foo/bar:1", "BUILDKIT_SYNTAX=foo/bar:1: unsupported frontend"},
		{"labs-syntax", "BUILDKIT_SYNTAX", "docker/dockerfile:1-labs", "BUILDKIT_SYNTAX=docker/dockerfile:1-labs: unsupported frontend"},
		{"multi-platform", "BUILDKIT_MULTI_PLATFORM", "1", "BUILDKIT_MULTI_PLATFORM=1 is not supported"},
		{"cache-namespace", "BUILDKIT_CACHE_MOUNT_NS", "ns1", "BUILDKIT_CACHE_MOUNT_NS=ns1 is not supported"},
		{"fileop", "BUILDKIT_DISABLE_FILEOP", "1", `support for "BUILDKIT_DISABLE_FILEOP" build-arg was removed in BuildKit 0.11`},
		{"bad-check", "BUILDKIT_DOCKERFILE_CHECK", "error=maybe", "BUILDKIT_DOCKERFILE_CHECK: failed to parse check options"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctxDir := writeContext(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY Dockerfile /\n"})
			dest := filepath.Join(t.TempDir(), "out")
			v := tc.value
			_, err := testBuild(t, Options{ContextDir: ctxDir, BuildArgs: map[string]*string{tc.arg: &v}}, "oci:"+dest)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want one line starting %q", err, tc.want)
			}
			if _, err := os.Stat(dest); !os.IsNotExist(err) {
				t.Errorf("the failed build wrote %s (%v)", dest, err)
			}
		})
	}
	// The built-in frontend named by BUILDKIT_SYNTAX builds.
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY Dockerfile /\n"})
	v := "docker/dockerfile:1.14"
	if _, err := testBuild(t, Options{ContextDir: ctxDir, BuildArgs: map[string]*string{"BUILDKIT_SYNTAX": &v}}); err != nil {
		t.Fatalf("BUILDKIT_SYNTAX=%s: %v", v, err)
	}
}
