package main

import (
	"os"
	"testing"

	"github.com/layercommit/layercommit/sandbox"
)

// TestMain lets this test binary be the init of RUN's sandbox, as main
// does for layercommit: build runs in-process in these tests.
func TestMain(m *testing.M) {
	sandbox.Main()
	os.Exit(m.Run())
}
