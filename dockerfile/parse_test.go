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
