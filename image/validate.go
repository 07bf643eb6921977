package image

import (
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/dockerfile"
)

// ValidateChanges checks --change lines before any work is done: their
// syntax, the instructions docker commit takes and their values (applied
// to an empty config), and what the profile's docker accepts. This is
// the one place of the per-profile rule: Docker 20.10 refuses STOPSIGNAL
// (allowed from v23 on) with the message used here.
func ValidateChanges(changes []string, p compat.Profile) error {
	var opts []dockerfile.ChangeOption
	if !p.CommitStopSignal {
		opts = append(opts, dockerfile.WithoutStopSignal())
	}
	_, err := dockerfile.ApplyChanges(v1.Config{}, changes, opts...)
	var ice *dockerfile.InvalidChangeError
	if errors.As(err, &ice) && ice.Instruction == "stopsignal" && !p.CommitStopSignal {
		return fmt.Errorf("%w (%s)", err, p.Name)
	}
	return err
}
