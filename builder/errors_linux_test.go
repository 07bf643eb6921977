package builder

import (
	"errors"
	"io/fs"
	"strconv"
	"testing"

	"github.com/layercommit/layercommit/dockerfile"
)

// TestBuildErrorsKeepCause: a build error names its Dockerfile line and
// wraps its cause, so errors.Is and errors.As see through it (they saw
// nothing when lineErr formatted causes with %v).
func TestBuildErrorsKeepCause(t *testing.T) {
	base := busyboxImage(t)
	for _, tc := range []struct {
		name, dockerfile string
		line             int
		cause            error
	}{
		{"from-missing-archive", "FROM docker-archive:/nonexistent/base.tar\n", 1, fs.ErrNotExist},
		{"from-missing-layout", "ARG L=/nonexistent/layout\nFROM oci:$L\n", 2, fs.ErrNotExist},
		{"parse", "FROM base\nHEALTHCHECK --retries=x CMD true\n", 2, strconv.ErrSyntax},
		{"stopsignal-invalid", "FROM base\nENV A=1\nSTOPSIGNAL 0\n", 3, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctxDir := writeContext(t, map[string]string{"Dockerfile": tc.dockerfile})
			_, err := testBuild(t, Options{ContextDir: ctxDir, BuildContexts: map[string]string{"base": base}})
			var le *dockerfile.LineError
			if !errors.As(err, &le) || le.Line != tc.line {
				t.Fatalf("error %v: want a LineError at line %d", err, tc.line)
			}
			if tc.cause != nil && !errors.Is(err, tc.cause) {
				t.Errorf("error %v does not wrap %v", err, tc.cause)
			}
		})
	}
}
