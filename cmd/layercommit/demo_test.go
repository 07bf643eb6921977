package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/layercommit/layercommit/internal/oracle"
)

// TestDemo: the demo's overlay changes come out as one change of each
// kind, the recreated directory opaque and the deleted file a whiteout.
func TestDemo(t *testing.T) {
	oracle.Root(t)
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := run([]string{"demo", dir}, &out, &errb); code != 0 {
		t.Fatalf("demo: exit %d: %s", code, errb.String())
	}
	want := `  add    "app"
  add    "app/cache" (opaque)
  add    "app/cache/fresh"
  add    "app/config"
  add    "app/latest"
  add    "app/pipe"
  add    "app/run-again.sh"
  add    "app/run.sh"
  add    "etc"
  delete "etc/motd"
`
	if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "upper dir: "+dir+"/upper\n") {
		t.Errorf("demo output:\n%s\nwant the changes:\n%s", out.String(), want)
	}
}
