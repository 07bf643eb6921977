package builder

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layercommit/layercommit/internal/oracle"
)

// busyboxRoot makes a lower dir with a static busybox as /bin/sh and
// friends, and passwd/group files.
func busyboxRoot(t *testing.T) string {
	t.Helper()
	oracle.Root(t)
	bb, err := exec.LookPath("busybox")
	if err != nil {
		oracle.Missing(t, "busybox-static not installed")
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "echo", "cat", "sleep", "id", "hostname", "ls", "touch", "rm", "mkdir", "pwd", "ip", "ps", "mount", "stat", "date", "test"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc/group"), []byte("root:x:0:\nnogroup:x:65534:\nstaff:x:50:nobody\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc/keep"), []byte("lower\n"), 0o644)
	return dir
}

func TestSandboxRun(t *testing.T) {
	lower := busyboxRoot(t)
	tmp := t.TempDir()
	initDir := filepath.Join(tmp, "init")
	if err := initLayer(initDir); err != nil {
		t.Fatal(err)
	}
	binds, err := etcFiles(tmp, "abc123", false)
	if err != nil {
		t.Fatal(err)
	}
	spec := sandboxSpec{
		Lowers: []string{initDir, lower}, Upper: filepath.Join(tmp, "upper"), Work: filepath.Join(tmp, "work"),
		Merged: filepath.Join(tmp, "merged"), Binds: binds, Hostname: "abc123",
		Args: []string{"/bin/sh", "-c", `echo out; echo err >&2; id; hostname; pwd; echo $HOME; cat /etc/hosts | grep -c abc123; ls /proc/1/ >/dev/null && echo proc; ip link 2>/dev/null | grep -c LOOPBACK; echo new > /etc/new; rm /etc/keep; echo x > /etc/hosts; (sleep 1000 &); exit 3`},
		Env:  []string{"PATH=/bin"}, Workdir: "/work/dir",
	}
	for _, d := range []string{spec.Upper, spec.Work, spec.Merged} {
		os.MkdirAll(d, 0o755)
	}
	var out bytes.Buffer
	code, err := runSandbox(context.Background(), spec, &out, &out)
	if err != nil {
		t.Fatalf("runSandbox: %v\n%s", err, out.String())
	}
	if code != 3 {
		t.Errorf("exit code %d, want 3\n%s", code, out.String())
	}
	got := out.String()
	for _, want := range []string{"out\n", "err\n", "uid=0(root) gid=0(root)", "abc123\n", "/work/dir\n", "/root\n", "proc\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	// The upper holds the command's changes, not the bind-mounted files
	// or the mount points.
	var names []string
	filepath.Walk(spec.Upper, func(p string, fi os.FileInfo, err error) error {
		if err == nil && p != spec.Upper {
			r, _ := filepath.Rel(spec.Upper, p)
			names = append(names, r)
		}
		return nil
	})
	if strings.Join(names, " ") != "etc etc/keep etc/new work work/dir" {
		t.Errorf("upper = %v", names)
	}
	if fi, err := os.Lstat(filepath.Join(spec.Upper, "etc/keep")); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Errorf("etc/keep is not a whiteout: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(binds["etc/hosts"]); string(b) != "x\n" {
		t.Errorf("/etc/hosts bind source = %q", b)
	}
	// USER is resolved against the image's own passwd and group.
	spec.Args, spec.User = []string{"sh", "-c", "id; echo $HOME"}, "nobody"
	out.Reset()
	if code, err := runSandbox(context.Background(), spec, &out, &out); err != nil || code != 0 {
		t.Fatalf("runSandbox as nobody: %d %v\n%s", code, err, out.String())
	}
	if want := "uid=65534(nobody) gid=65534(nogroup) groups=50(staff),65534(nogroup)\n/nonexistent\n"; out.String() != want {
		t.Errorf("as nobody: %q, want %q", out.String(), want)
	}
	// The mount namespace is gone with the sandbox: merged is empty.
	if ents, _ := os.ReadDir(spec.Merged); len(ents) != 0 {
		t.Errorf("merged dir still mounted: %v", ents)
	}
}
