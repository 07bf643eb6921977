package builder

import (
	"fmt"

	"github.com/layercommit/layercommit/dockerfile"
)

// lineErr is an error at a line of the Dockerfile ("Dockerfile:LINE:
// ..."); wrap a cause with %w so that errors.Is and errors.As see it.
func lineErr(line int, format string, args ...any) error {
	return &dockerfile.LineError{Line: line, Err: fmt.Errorf(format, args...)}
}
