package image

import (
	"errors"
	"strings"
	"testing"

	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/dockerfile"
)

// TestValidateChangesProfiles: the per-profile STOPSIGNAL rule, and the
// checks every profile makes before any work is done.
func TestValidateChangesProfiles(t *testing.T) {
	for _, tc := range []struct {
		name    string
		changes []string
		profile compat.Profile
		wantErr string
	}{
		{"stopsignal-docker-24", []string{"STOPSIGNAL SIGTERM"}, compat.Docker24, ""},
		{"stopsignal-docker-20.10", []string{"STOPSIGNAL SIGTERM"}, compat.Docker2010, "stopsignal is not a valid change command (docker-20.10)"},
		{"bad-stopsignal-docker-24", []string{"STOPSIGNAL NOPE"}, compat.Docker24, "invalid signal: NOPE"},
		{"run-docker-24", []string{"RUN true"}, compat.Docker24, "run is not a valid change command"},
		{"bad-expose-docker-20.10", []string{"EXPOSE 1/xyz"}, compat.Docker2010, "invalid proto: xyz"},
		{"fine", []string{"ENV A=1", "EXPOSE 8000-8002"}, compat.Docker2010, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateChanges(tc.changes, tc.profile)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if strings.Contains(tc.wantErr, "valid change") && !errors.Is(err, dockerfile.ErrInvalidChange) {
				t.Errorf("%v is not ErrInvalidChange", err)
			}
		})
	}
}
