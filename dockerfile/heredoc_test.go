package dockerfile

import (
	"strings"
	"testing"
)

// TestSoleHeredoc: only a shell-form RUN whose command line is one
// heredoc marker runs the body itself.
func TestSoleHeredoc(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		sole      bool
	}{
		{"plain", "RUN <<EOF\necho $x\nEOF\n", true},
		{"chomp", "RUN <<-EOF\n\techo\nEOF\n", true},
		{"quoted", "RUN <<'EOF'\necho\nEOF\n", true},
		{"with-command", "RUN cat <<EOF\nx\nEOF\n", false},
		{"two", "RUN <<A <<B\na\nA\nb\nB\n", false},
		{"none", "RUN echo <<\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			df, err := Parse(strings.NewReader("FROM scratch\n" + tc.src))
			if err != nil {
				t.Fatal(err)
			}
			h, ok := df.Stages[0].Instructions[0].(*RunInstr).SoleHeredoc()
			if ok != tc.sole {
				t.Fatalf("SoleHeredoc = %+v, %t; want %t", h, ok, tc.sole)
			}
		})
	}
}

// TestHeredocSource: COPY/ADD sources are heredocs whatever their
// marker's quoting.
func TestHeredocSource(t *testing.T) {
	for word, want := range map[string]string{"<<EOF": "EOF", "<<-EOF": "EOF", `<<"EOF"`: "EOF", "<<'X'": "X", "file": "", "<<": ""} {
		name, ok := HeredocSource(word)
		if name != want || ok != (want != "") {
			t.Errorf("HeredocSource(%q) = %q, %t; want %q", word, name, ok, want)
		}
	}
}

// TestProcessHeredoc: variables are expanded, quotes and the rest kept,
// as BuildKit expands a COPY heredoc.
func TestProcessHeredoc(t *testing.T) {
	env := []string{"A=1", "B=two words"}
	for _, tc := range []struct{ in, want string }{
		{`{"a": "$A"}`, `{"a": "1"}`},
		{`'$A' "${B}"`, `'1' "two words"`},
		{`\$A ${C:-dflt} $C.`, `$A dflt .`},
		{"tab\tand\nnewline $A\n", "tab\tand\nnewline 1\n"},
	} {
		got, err := ProcessHeredoc(tc.in, env)
		if err != nil || got != tc.want {
			t.Errorf("ProcessHeredoc(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := ProcessHeredoc("${A:?unset}${Z:?is unset}", env); err == nil || !strings.Contains(err.Error(), "is unset") {
		t.Errorf("${Z:?} error = %v", err)
	}
}
