// Package archtest checks that dependencies point downstream only (the
// package tree is the data flow, STYLE.md principle 1).
package archtest

import (
	"os/exec"
	"slices"
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

// TestOnlyDockerfileImportsBuildkit: buildkit's parser and lexer are
// reached through package dockerfile alone; no other package (nor its
// tests) imports buildkit directly.
func TestOnlyDockerfileImportsBuildkit(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{.Imports}} {{.TestImports}} {{.XTestImports}}", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, " ")
		if pkg == module+"/dockerfile" {
			continue
		}
		for _, imp := range strings.Fields(strings.NewReplacer("[", " ", "]", " ").Replace(imports)) {
			if imp == "github.com/moby/buildkit" || strings.HasPrefix(imp, "github.com/moby/buildkit/") {
				t.Errorf("%s imports %s; only dockerfile may", pkg, imp)
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

// TestTestHelpersStayInTests: fixtures, internal/oracle and
// internal/userns/testuser are test helpers; no package of the program
// depends on them (test files may).
func TestTestHelpersStayInTests(t *testing.T) {
	helpers := []string{module + "/fixtures", module + "/internal/oracle", module + "/internal/userns/testuser"}
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Deps \" \"}}", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := f[0]
		if slices.Contains(helpers, pkg) {
			continue
		}
		for _, d := range f[1:] {
			if slices.Contains(helpers, d) {
				t.Errorf("%s depends on %s, a test helper", pkg, d)
			}
		}
	}
}
