package dockerfile

import (
	"fmt"
	"regexp"

	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// builtinSyntax matches the `# syntax=` values that name the frontend
// built in here, BuildKit's dockerfile:1 channel: docker/dockerfile
// (optionally docker.io/), untagged, :latest, :1, :1.N or :1.N.M, with
// an optional @sha256 digest. BuildKit would pull the named image and run
// it; layercommit pulls no frontend, so it builds what that image
// builds only for the stable 1.x channel it implements (not -labs, whose
// experimental instructions it lacks).
var builtinSyntax = regexp.MustCompile(`^(docker\.io/)?docker/dockerfile(:(latest|1(\.[0-9]+){0,2}))?(@sha256:[0-9a-f]{64})?$`)

// BuiltinSyntax reports whether a frontend reference (a `# syntax=`
// value, or BUILDKIT_SYNTAX) names the built-in docker/dockerfile:1.
func BuiltinSyntax(ref string) bool { return builtinSyntax.MatchString(ref) }

// CheckOptions validates `# check=` options (or BUILDKIT_DOCKERFILE_CHECK)
// with BuildKit's own parser.
func CheckOptions(v string) error {
	if _, err := linter.ParseLintOptions(v); err != nil {
		return fmt.Errorf("failed to parse check options: %w", err)
	}
	return nil
}

// readDirectives checks the file's `# syntax=` and `# check=` directives
// (BuildKit's parser finds them, in its comment forms) and records them.
// Lint rules themselves are not run: `check` is validated with
// BuildKit's own option parser (linter.ParseLintOptions) so a bad value
// fails as it fails in BuildKit.
func (df *Dockerfile) readDirectives(data []byte) error {
	if ref, _, loc, ok := parser.DetectSyntax(data); ok {
		if !builtinSyntax.MatchString(ref) {
			return &LineError{Line: directiveLine(loc), Err: fmt.Errorf("unsupported frontend %q in the syntax directive: layercommit builds with its built-in docker/dockerfile:1 and runs no frontend image", ref)}
		}
		df.Syntax = ref
	}
	if v, _, loc, ok := parser.ParseDirective("check", data); ok {
		if err := CheckOptions(v); err != nil {
			return &LineError{Line: directiveLine(loc), Err: err}
		}
		df.Check = v
	}
	return nil
}

// directiveLine is the (1-based) line of a directive the parser located.
func directiveLine(loc []parser.Range) int {
	if len(loc) == 0 {
		return 1
	}
	return max(loc[0].Start.Line, 1)
}
