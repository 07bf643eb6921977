package export

import (
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestPlaceName scripts index changes of the store: each name one entry,
// untagged images kept once, a displaced image kept untagged.
func TestPlaceName(t *testing.T) {
	h := func(c string) v1.Hash { return v1.Hash{Algorithm: "sha256", Hex: strings.Repeat(c, 64)} }
	show := func(im *v1.IndexManifest) string {
		var s []string
		for _, m := range im.Manifests {
			s = append(s, m.Digest.Hex[:1]+"="+m.Annotations[refNameAnnotation])
		}
		return strings.Join(s, " ")
	}
	type op struct{ digest, name string }
	for _, tc := range []struct {
		name string
		ops  []op
		want string
	}{
		{"untagged once", []op{{"a", ""}, {"a", ""}}, "a="},
		{"named replaces untagged", []op{{"a", ""}, {"a", "x"}}, "a=x"},
		{"untagged after named adds nothing", []op{{"a", "x"}, {"a", ""}}, "a=x"},
		{"two names", []op{{"a", "x"}, {"a", "y"}}, "a=x a=y"},
		{"moved name leaves the old image dangling", []op{{"a", "x"}, {"b", "x"}}, "b=x a="},
		{"moved name, old image still named", []op{{"a", "x"}, {"a", "y"}, {"b", "x"}}, "a=y b=x"},
		{"same name same image", []op{{"a", "x"}, {"a", "x"}}, "a=x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			im := &v1.IndexManifest{}
			for _, o := range tc.ops {
				placeName(im, v1.Descriptor{Digest: h(o.digest)}, o.name)
			}
			if got := show(im); got != tc.want {
				t.Errorf("index %s, want %s", got, tc.want)
			}
		})
	}
}

func TestNormalizeName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"app", "docker.io/library/app:latest"},
		{"app:1", "docker.io/library/app:1"},
		{"user/app", "docker.io/user/app:latest"},
		{"127.0.0.1:5000/app", "127.0.0.1:5000/app:latest"},
		{"localhost/app:2", "localhost/app:2"},
		{"App", `bad image name "App": invalid reference format: repository name (library/App) must be lowercase`},
		{"app@sha256:" + strings.Repeat("a", 64), `bad image name "app@sha256:` + strings.Repeat("a", 64) + `": a name to store takes a tag, not a digest`},
		{"", `bad image name "": invalid reference format`},
	} {
		got, err := NormalizeName(tc.in)
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("NormalizeName(%q) = %s, want %s", tc.in, got, tc.want)
		}
		// docker's short form names the same image.
		if err == nil {
			if back, _ := NormalizeName(FamiliarName(got)); back != got || strings.HasPrefix(FamiliarName(got), "docker.io/") {
				t.Errorf("FamiliarName(%s) = %s", got, FamiliarName(got))
			}
		}
	}
}
