package commit

import (
	"strings"
	"testing"

	"github.com/layercommit/layercommit/compat"
)

func TestSparseWarning(t *testing.T) {
	other := compat.Profile{Name: "not-docker"}
	for _, tc := range []struct {
		name string
		p    compat.Profile
		to   string
		want bool
	}{
		{"docker-29 profile, OCI layout", compat.Docker29, "oci:/x:t", true},
		{"docker-20.10 profile, OCI layout", compat.Docker2010, "oci:/x:t", true},
		{"default profile", compat.Default, "oci:/x:t", true},
		{"other profile, docker-archive", other, "docker-archive:/x.tar:t", true},
		{"other profile, docker-root", other, "docker-root:t", true},
		{"other profile, OCI layout", other, "oci:/x:t", false},
		{"other profile, registry", other, "docker://r/x:t", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := SparseWarning(tc.p, tc.to)
			if (w != "") != tc.want {
				t.Fatalf("SparseWarning = %q, want a warning: %v", w, tc.want)
			}
			if w != "" && (!strings.Contains(w, "docker save") || strings.Contains(w, "\n")) {
				t.Fatalf("warning %q does not name the limitation on one line", w)
			}
		})
	}
}
