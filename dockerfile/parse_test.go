package dockerfile

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestParseGolden parses testdata/<case>/Dockerfile and compares the dump
// (or "error: ..." for cases named err-*) with testdata/<case>/result.
func TestParseGolden(t *testing.T) {
	dirs, err := filepath.Glob("testdata/*/Dockerfile")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, df := range dirs {
		dir := filepath.Dir(df)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			f, err := os.Open(df)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			d, err := Parse(f)
			var got string
			if err != nil {
				got = "error: " + err.Error() + "\n"
			} else {
				got = d.Dump()
				for _, w := range d.Warnings {
					got += "warning: " + w + "\n"
				}
			}
			isErr := strings.HasPrefix(filepath.Base(dir), "err-")
			if isErr != (err != nil) {
				t.Errorf("error = %v; cases named err-* must fail and only they", err)
			}
			golden := filepath.Join(dir, "result")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestParseCaps is HOSTILE.md D14: BuildKit has no cap on a Dockerfile's
// size or instruction count; Parse does.
func TestParseCaps(t *testing.T) {
	big := "FROM busybox\nLABEL " + strings.Repeat("a=b ", 1000) + "\n"
	huge := strings.Repeat(big, MaxDockerfileSize/len(big)+1)
	if _, err := Parse(strings.NewReader(huge)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("%d bytes: error %v", len(huge), err)
	}
	many := "FROM busybox\n" + strings.Repeat("RUN x\n", MaxInstructions)
	if _, err := Parse(strings.NewReader(many)); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("%d instructions: error %v", MaxInstructions+1, err)
	}
	ok := "FROM busybox\n" + strings.Repeat("RUN x\n", 1000)
	if _, err := Parse(strings.NewReader(ok)); err != nil {
		t.Errorf("1001 instructions: %v", err)
	}
}

// TestParseTrigger: an ONBUILD trigger of a base image parses as one
// instruction located at the FROM that runs it; what ONBUILD itself
// refuses is refused here too.
func TestParseTrigger(t *testing.T) {
	for _, tc := range []struct {
		name, expr, want, wantErr string
	}{
		{"env", "ENV A=$B", "ENV A=$B", ""},
		{"run", "RUN echo hi", "RUN echo hi", ""},
		{"from", "FROM scratch", "", "Dockerfile:7: FROM isn't allowed as an ONBUILD trigger"},
		{"two", "ENV A=1\nENV B=2", "", "Dockerfile:7: bad ONBUILD trigger"},
		{"bogus", "BOGUS x", "", "Dockerfile:7: unknown instruction: BOGUS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := ParseTrigger(tc.expr, 7)
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want prefix %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if in.String() != tc.want || in.Pos() != 7 || in.Source() != tc.expr {
				t.Errorf("got %q at %d (source %q)", in, in.Pos(), in.Source())
			}
		})
	}
}
