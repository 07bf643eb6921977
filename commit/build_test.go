package commit

import (
	"fmt"
	"testing"

	"github.com/layercommit/layercommit/export"
)

// TestParseAnnotations: buildx's --annotation spelling, BuildKit's rules
// for a single-platform image.
func TestParseAnnotations(t *testing.T) {
	for _, tc := range []struct {
		name, plat string
		vals       []string
		want       string // fmt of the map, or the error
	}{
		{"bare key", "linux/amd64", []string{"org.a=1"}, "map[org.a:1]"},
		{"manifest type", "linux/amd64", []string{"manifest:org.a=1"}, "map[org.a:1]"},
		{"value with =", "linux/amd64", []string{"org.a=x=y"}, "map[org.a:x=y]"},
		{"empty value", "linux/amd64", []string{"org.a="}, "map[org.a:]"},
		{"matching platform", "linux/arm64", []string{"manifest[linux/arm64]:org.a=1"}, "map[org.a:1]"},
		{"other platform dropped", "linux/amd64", []string{"manifest[linux/arm64]:org.a=1", "org.b=2"}, "map[org.b:2]"},
		{"later wins", "linux/amd64", []string{"org.a=1", "org.a=2"}, "map[org.a:2]"},
		{"index refused", "linux/amd64", []string{"index:org.a=1"}, `bad --annotation "index:org.a=1": index annotations not supported for single platform export`},
		{"index-descriptor refused", "linux/amd64", []string{"index-descriptor:org.a=1"}, `bad --annotation "index-descriptor:org.a=1": index annotations not supported for single platform export`},
		{"unknown type", "linux/amd64", []string{"layer:org.a=1"}, `bad --annotation "layer:org.a=1": unrecognized annotation type layer`},
		{"no value", "linux/amd64", []string{"org.a"}, `bad --annotation "org.a" (want [TYPE:]KEY=VALUE)`},
		{"space in key", "linux/amd64", []string{"org a=1"}, `bad --annotation "org a=1" (want [TYPE:]KEY=VALUE)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseAnnotations(tc.vals, tc.plat)
			got := fmt.Sprint(m)
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// TestReferencePlainNames: a plain name (also one that starts like a
// transport, as Docker's own docker:20) resolves to the local store when
// it holds it, else to a registry pull; a transport reference stays.
func TestReferencePlainNames(t *testing.T) {
	state := t.TempDir()
	for _, c := range []struct{ ref, want string }{
		{"docker:20", "docker://docker:20"},
		{"alpine", "docker://alpine"},
		{"docker://registry:5000/app:1", "docker://registry:5000/app:1"},
		{"oci:/tmp/layout:x", "oci:/tmp/layout:x"},
		{"containers-storage:app", "containers-storage:app"},
	} {
		got, err := Reference(c.ref, export.WithStateDir(state))
		if err != nil || got != c.want {
			t.Errorf("Reference(%q) = %q, %v; want %q", c.ref, got, err, c.want)
		}
	}
}
