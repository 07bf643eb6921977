package export

import "testing"

// TestParseDockerNeedsSlashes: the registry transport is docker://; a
// name such as docker:20 (Docker's own image) is a plain name, so that
// FROM docker:20 and --from docker:20 resolve as docker build resolves it.
func TestParseDockerNeedsSlashes(t *testing.T) {
	for _, c := range []struct {
		ref, rest string
		ok        bool
	}{
		{"docker://registry:5000/app:1", "registry:5000/app:1", true},
		{"docker://app", "app", true},
		{"docker:20", "", false},
		{"docker:dind", "", false},
		{"docker-archive:/tmp/a.tar", "/tmp/a.tar", true},
		{"scratch", "", true},
	} {
		_, rest, err := Parse(c.ref)
		if (err == nil) != c.ok || rest != c.rest {
			t.Errorf("Parse(%q) = %q, %v; want %q, ok=%t", c.ref, rest, err, c.rest, c.ok)
		}
	}
}
