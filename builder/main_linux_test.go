package builder

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/internal/oracle"
	"github.com/layercommit/layercommit/sandbox"
)

// TestMain lets this test binary be the init of RUN's sandbox.
func TestMain(m *testing.M) {
	sandbox.Main()
	os.Exit(m.Run())
}

// busyboxRoot makes a root dir with a static busybox as /bin/sh and
// friends, and passwd/group files.
func busyboxRoot(t *testing.T) string {
	t.Helper()
	oracle.Root(t)
	bb, err := exec.LookPath("busybox")
	if err != nil {
		oracle.Missing(t, "busybox-static not installed")
	}
	dir := t.TempDir()
	if err := fixtures.Apply(dir, fixtures.Busybox(bb)); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc/group"), []byte("root:x:0:\nnogroup:x:65534:\nstaff:x:50:nobody\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc/keep"), []byte("lower\n"), 0o644)
	return dir
}
