package main

import (
	"strings"
	"testing"
)

// TestLegacyBuilder: DOCKER_BUILDKIT as docker reads it — unset, empty or
// true keeps BuildKit's rules, a false boolean asks for the legacy
// builder's, anything else is one error line naming the variable.
func TestLegacyBuilder(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		set         bool
		legacy      bool
		err         string
	}{
		{name: "unset"},
		{name: "empty", set: true},
		{name: "one", value: "1", set: true},
		{name: "true", value: "true", set: true},
		{name: "zero", value: "0", set: true, legacy: true},
		{name: "false", value: "false", set: true, legacy: true},
		{name: "not a boolean", value: "maybe", set: true, err: "DOCKER_BUILDKIT environment variable expects boolean value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lookup := func(k string) (string, bool) {
				if k != "DOCKER_BUILDKIT" {
					t.Fatalf("looked up %s", k)
				}
				return tc.value, tc.set
			}
			legacy, err := legacyBuilder(lookup)
			switch {
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("error %v, want one line containing %q", err, tc.err)
				}
			case err != nil:
				t.Fatal(err)
			case legacy != tc.legacy:
				t.Fatalf("legacy %v, want %v", legacy, tc.legacy)
			}
		})
	}
}
