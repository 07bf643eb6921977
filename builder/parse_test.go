package builder

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
