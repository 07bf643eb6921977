package builder

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// FuzzParse parses arbitrary Dockerfiles and expands every word of what
// parsed the way a build would (meta ARGs, ENV, heredocs): nothing may
// panic, and errors must be one line naming the Dockerfile.
func FuzzParse(f *testing.F) {
	dirs, _ := filepath.Glob("testdata/*/Dockerfile")
	for _, d := range dirs {
		if b, err := os.ReadFile(d); err == nil {
			f.Add(string(b))
		}
	}
	f.Add("FROM a\nRUN echo ${X:-${Y:+$Z}} ${A#b} ${A%%c} $$ \\$ '${Q}'\n")
	f.Add("# escape=`\nFROM a\nRUN <<-E1 <<'E2'\n\tx `\nE1\ny\nE2\n")
	f.Fuzz(func(t *testing.T, src string) {
		d, err := Parse(strings.NewReader(src))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			return
		}
		lex := shell.NewLex(d.EscapeToken)
		env := envGetter{"A=abc", "HOME=/root", "PATH=/bin"}
		for _, line := range strings.Split(d.Dump(), "\n") {
			lex.ProcessWord(line, env)
			lex.ProcessWords(line, env)
		}
	})
}
