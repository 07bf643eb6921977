package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/internal/oracle"
)

// cli runs the command in-process and returns exit code, stdout, stderr.
func cli(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestDiffToFileAndStdout(t *testing.T) {
	oracle.Root(t)
	upper := t.TempDir()
	if err := fixtures.Apply(upper, fixtures.CreateFile("f", []byte("hello"), 0o644), fixtures.Whiteout("gone")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "layer.tar")
	code, stdout, stderr := cli("diff", "--compat", "docker-20.10", "-o", out, upper)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if last := lines[len(lines)-1]; last != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("last stdout line %q is not the diffID of the file", last)
	}

	code, stdout, stderr = cli("diff", "--compat", "docker-20.10", upper)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if stdout != string(b) {
		t.Error("the tar on stdout differs from the tar in the file")
	}
	if lines := strings.Split(strings.TrimSpace(stderr), "\n"); lines[len(lines)-1] != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("last stderr line %q is not the diffID", stderr)
	}
}

func TestDiffBadInput(t *testing.T) {
	oracle.Root(t)
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	redirect := t.TempDir()
	if err := fixtures.Apply(redirect, fixtures.CreateDir("moved", 0o755), fixtures.Xattr("moved", "trusted.overlay.redirect", []byte("orig"))); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing dir", []string{filepath.Join(tmp, "nope")}, "no such file"},
		{"file not dir", []string{file}, "not a directory"},
		{"unknown profile", []string{"--compat", "docker-1.0", tmp}, "unknown compat profile"},
		{"unknown source", []string{"--source", "zfs", tmp}, "unknown diff source"},
		{"naive without lower", []string{"--source", "naive", tmp}, "exactly one --lower"},
		{"redirect without lowers", []string{redirect}, "moved"},
		{"two upper dirs", []string{tmp, tmp}, "want one UPPERDIR"},
		{"bad flag", []string{"--bogus", tmp}, "bogus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outDir := t.TempDir()
			out := filepath.Join(outDir, "layer.tar")
			code, stdout, stderr := cli(append([]string{"diff", "-o", out}, tc.args...)...)
			if code == 0 {
				t.Fatalf("exit 0, stdout %q", stdout)
			}
			assertOneLineError(t, stderr, tc.want)
			assertEmptyDir(t, outDir)
		})
	}
}

func assertOneLineError(t *testing.T, stderr, want string) {
	t.Helper()
	if !strings.HasPrefix(stderr, "layercommit: ") || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, want) {
		t.Errorf("want one line 'layercommit: ...%s...', got %q", want, stderr)
	}
}

func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("left behind: %s", e.Name())
	}
}

// TestDiffUnreadableEntry runs the binary as an unprivileged user over a
// tree with a file it cannot read: a one-line error and no output file.
func TestDiffUnreadableEntry(t *testing.T) {
	oracle.Root(t)
	// t.TempDir's parents are 0700: the unprivileged user needs its own.
	tmp, err := os.MkdirTemp("", "layercommit-unreadable-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	if err := os.Chmod(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(tmp, "layercommit")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	upper, outDir := filepath.Join(tmp, "upper"), filepath.Join(tmp, "out")
	if err := fixtures.Apply(tmp,
		fixtures.CreateDir("upper", 0o755),
		fixtures.CreateFile("upper/ok", []byte("ok"), 0o644),
		fixtures.CreateFile("upper/secret", []byte("secret"), 0o600),
		fixtures.CreateDir("out", 0o777),
	); err != nil {
		t.Fatal(err)
	}
	// As the user itself, in no user namespace (nobody has no
	// subordinate ids; see TestRootlessRefused for what it is told).
	cmd := exec.Command(bin, "--userns=host", "diff", "-o", filepath.Join(outDir, "layer.tar"), upper)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err == nil {
		t.Fatalf("exit 0 reading an unreadable file; stdout %q", stdout.String())
	}
	assertOneLineError(t, stderr.String(), "secret")
	assertEmptyDir(t, outDir)
}
