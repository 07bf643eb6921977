package dockerfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// FuzzParse parses arbitrary Dockerfiles, expands every word of what
// parsed the way a build would (meta ARGs, ENV, heredocs) and dispatches
// the metadata instructions: nothing may panic, and errors must be one
// line naming the Dockerfile.
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
		lex := NewLex(d.EscapeToken)
		env := []string{"A=abc", "HOME=/root", "PATH=/bin"}
		for _, line := range strings.Split(d.Dump(), "\n") {
			lex.ProcessWord(line, env)
			lex.ProcessWords(line, env)
		}
		for _, s := range d.Stages {
			cfg := v1.Config{Env: env}
			m := Dispatcher{Config: &cfg, Lex: lex}
			for _, in := range s.Instructions {
				if _, err := m.Dispatch(in); err != nil && strings.Contains(err.Error(), "\n") {
					t.Errorf("dispatch error is not one line: %q", err)
				}
			}
		}
	})
}
