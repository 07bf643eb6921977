// Package archtest checks that dependencies point downstream only (the
// package tree is the data flow, STYLE.md principle 1).
package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/layercommit/layercommit"

func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

func TestDiffImportsNeitherExportNorBuilder(t *testing.T) {
	for _, d := range deps(t, module+"/diff") {
		for _, banned := range []string{module + "/export", module + "/builder", module + "/unpack", "github.com/moby/buildkit"} {
			if d == banned || strings.HasPrefix(d, banned+"/") {
				t.Errorf("diff depends on %s", d)
			}
		}
	}
}

func TestOnlyBuilderImportsBuildkit(t *testing.T) {
	out, err := exec.Command("go", "list", module+"/...").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == module+"/builder" || strings.HasPrefix(pkg, module+"/builder/") || pkg == module+"/cmd/layercommit" || pkg == module+"/commit" {
			continue
		}
		for _, d := range deps(t, pkg) {
			if strings.HasPrefix(d, "github.com/moby/buildkit") {
				t.Errorf("%s depends on %s; only builder may", pkg, d)
				break
			}
		}
	}
}

// imports lists pkg's direct non-test imports.
func imports(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", `{{join .Imports " "}}`, pkg).Output()
	if err != nil {
		t.Fatalf("go list -f {{.Imports}} %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

// TestImportRules: stages return values and their callers pick the sink,
// so the builder and the layer stage know no transport.
func TestImportRules(t *testing.T) {
	out, err := exec.Command("go", "list", module+"/...").Output()
	if err != nil {
		t.Fatal(err)
	}
	banned := map[string][]string{
		module + "/builder": {module + "/export", module + "/commit"},
		module + "/layer":   {module + "/image", module + "/export"},
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, d := range deps(t, pkg) {
			for _, b := range banned[pkg] {
				if d == b {
					t.Errorf("%s depends on %s", pkg, d)
				}
			}
		}
	}
}
