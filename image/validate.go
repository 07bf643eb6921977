package image

import (
	"fmt"
	"strings"

	"github.com/layercommit/layercommit/compat"
)

// ValidateChanges checks --change lines against what the profile's
// docker commit accepts, before any work is done: Docker 20.10 refuses
// STOPSIGNAL (allowed from v23 on) with the message used here.
func ValidateChanges(changes []string, p compat.Profile) error {
	if p.CommitStopSignal {
		return nil
	}
	for _, line := range logicalLines(strings.Join(changes, "\n")) {
		kw, _, _ := strings.Cut(strings.TrimLeft(line, " \t"), " ")
		kw, _, _ = strings.Cut(kw, "\t")
		if strings.EqualFold(kw, "STOPSIGNAL") {
			return fmt.Errorf("stopsignal is not a valid change command (%s)", p.Name)
		}
	}
	return nil
}
