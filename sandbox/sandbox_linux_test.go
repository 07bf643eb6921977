package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/internal/oracle"
)

// TestMain lets this test binary be a sandbox's init.
func TestMain(m *testing.M) {
	Main()
	os.Exit(m.Run())
}

// busyboxRoot makes a lower dir with a static busybox as /bin/sh and
// friends, and passwd/group files.
func busyboxRoot(t *testing.T) string {
	dir := bareBusyboxRoot(t)
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc/group"), []byte("root:x:0:\nnogroup:x:65534:\nstaff:x:50:nobody\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc/keep"), []byte("lower\n"), 0o644)
	return dir
}

// bareBusyboxRoot makes a lower dir with only a static busybox as /bin/sh
// and friends: no /etc at all, as a busybox-static image has.
func bareBusyboxRoot(t *testing.T) string {
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
	return dir
}

func TestSandboxRun(t *testing.T) {
	lower := busyboxRoot(t)
	tmp := t.TempDir()
	initDir := filepath.Join(tmp, "init")
	if err := InitLayer(initDir); err != nil {
		t.Fatal(err)
	}
	binds, err := EtcFiles(tmp, "abc123", false)
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{
		Lowers: []string{initDir, lower}, Upper: filepath.Join(tmp, "upper"), Work: filepath.Join(tmp, "work"),
		Merged: filepath.Join(tmp, "merged"), Binds: binds, Hostname: "abc123",
		Args: []string{"/bin/sh", "-c", `echo out; echo err >&2; id; hostname; pwd; echo $HOME; cat /etc/hosts | grep -c abc123; ls /proc/1/ >/dev/null && echo proc; ip link 2>/dev/null | grep -c LOOPBACK; echo new > /etc/new; rm /etc/keep; echo x > /etc/hosts; (sleep 1000 &); exit 3`},
		Env:  []string{"PATH=/bin"}, Workdir: "/work/dir",
	}
	for _, d := range []string{spec.Upper, spec.Work, spec.Merged} {
		os.MkdirAll(d, 0o755)
	}
	var out bytes.Buffer
	code, err := Run(context.Background(), spec, &out, &out)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
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
	if code, err := Run(context.Background(), spec, &out, &out); err != nil || code != 0 {
		t.Fatalf("Run as nobody: %d %v\n%s", code, err, out.String())
	}
	if want := "uid=65534(nobody) gid=65534(nogroup) groups=50(staff),65534(nogroup)\n/nonexistent\n"; out.String() != want {
		t.Errorf("as nobody: %q, want %q", out.String(), want)
	}
	// The mount namespace is gone with the sandbox: merged is empty.
	if ents, _ := os.ReadDir(spec.Merged); len(ents) != 0 {
		t.Errorf("merged dir still mounted: %v", ents)
	}
}

// newSpec makes the dirs of a sandbox over lowers (top first; the init
// layer is put on top).
func newSpec(t *testing.T, lowers []string, args ...string) Spec {
	t.Helper()
	tmp := t.TempDir()
	initDir := filepath.Join(tmp, "init")
	if err := InitLayer(initDir); err != nil {
		t.Fatal(err)
	}
	binds, err := EtcFiles(tmp, "host1", false)
	if err != nil {
		t.Fatal(err)
	}
	s := Spec{
		Lowers: append([]string{initDir}, lowers...), Upper: filepath.Join(tmp, "upper"), Work: filepath.Join(tmp, "work"),
		Merged: filepath.Join(tmp, "merged"), Binds: binds, Hostname: "host1", Args: args, Env: []string{"PATH=/bin"},
	}
	for _, d := range []string{s.Upper, s.Work, s.Merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// TestSandboxUsers: USER is resolved with runc's rules (Docker's and
// BuildKit's): a root without /etc/passwd and /etc/group runs as uid 0,
// gid 0 with HOME=/, a numeric user needs no entry, a name needs one.
func TestSandboxUsers(t *testing.T) {
	bare, full := bareBusyboxRoot(t), busyboxRoot(t)
	fifo, dirGroup := bareBusyboxRoot(t), busyboxRoot(t)
	if err := fixtures.Apply(fifo, fixtures.CreateDir("etc", 0o755), fixtures.Fifo("etc/passwd", 0o644)); err != nil {
		t.Fatal(err)
	}
	if err := fixtures.Apply(dirGroup, fixtures.Remove("etc/group"), fixtures.CreateDir("etc/group", 0o755)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, root, user, want, err string
	}{
		{name: "no passwd, no USER", root: bare, want: "0:0:0:/"},
		{name: "no passwd, numeric USER", root: bare, user: "1234", want: "1234:0:0:/"},
		{name: "no passwd, numeric USER and group", root: bare, user: "1234:99", want: "1234:99:99:/"},
		{name: "no passwd, USER root", root: bare, user: "root", err: "unable to find user root"},
		{name: "no group file, named group", root: bare, user: "0:staff", err: "unable to find group staff"},
		{name: "passwd, no USER", root: full, want: "0:0:0:/root"},
		{name: "passwd, numeric USER not in it", root: full, user: "4321", want: "4321:0:0:/"},
		{name: "passwd, name", root: full, user: "nobody", want: "65534:65534:65534 50:/nonexistent"},
		{name: "passwd, name and group", root: full, user: "nobody:staff", want: "65534:50:50:/nonexistent"},
		{name: "passwd, unknown name", root: full, user: "nosuch", err: "unable to find user nosuch"},
		// A FIFO would block runc's open forever; we refuse it at once.
		{name: "passwd is a FIFO", root: fifo, err: "/etc/passwd: not a regular file"},
		{name: "group is a directory", root: dirGroup, user: "nobody", err: "/etc/group: not a regular file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := newSpec(t, []string{c.root}, "sh", "-c", `echo "$(id -u):$(id -g):$(id -G):$HOME"`)
			spec.User = c.user
			var out bytes.Buffer
			code, err := Run(context.Background(), spec, &out, &out)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("got %v (exit %d, %q), want an error with %q", err, code, out.String(), c.err)
				}
				return
			}
			if err != nil || code != 0 {
				t.Fatalf("Run: exit %d, %v\n%s", code, err, out.String())
			}
			if got := strings.TrimSpace(out.String()); got != c.want {
				t.Errorf("uid:gid:groups:HOME = %q, want %q", got, c.want)
			}
		})
	}
}

// TestSandboxManyLayers: a root of 130 layers (more than mount(2)'s one
// page of options holds with full paths) runs, seeing the bottom and the
// top layer.
func TestSandboxManyLayers(t *testing.T) {
	const n = 130
	lowers := make([]string, n)
	base := filepath.Join(t.TempDir(), strings.Repeat("l", 64))
	for i := range lowers {
		lowers[i] = filepath.Join(base, fmt.Sprintf("%064d", n-1-i))
		if err := os.MkdirAll(lowers[i], 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(lowers[i], fmt.Sprintf("f%d", n-1-i)), []byte(fmt.Sprint(n-1-i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lowers[n-1] = bareBusyboxRoot(t) // the bottom layer holds the shell
	spec := newSpec(t, lowers, "sh", "-c", fmt.Sprintf("cat /f1 /f%d", n-1))
	var out bytes.Buffer
	if code, err := Run(context.Background(), spec, &out, &out); err != nil || code != 0 {
		t.Fatalf("Run: exit %d, %v\n%s", code, err, out.String())
	}
	if got, want := out.String(), fmt.Sprintf("1%d", n-1); got != want {
		t.Errorf("output %q, want %q", got, want)
	}
}

// TestRunNeedsMain: without Main, Run does not re-execute the binary
// (which would run as itself, not as the init).
func TestRunNeedsMain(t *testing.T) {
	mainCalled.Store(false)
	defer mainCalled.Store(true)
	if _, err := Run(context.Background(), Spec{Args: []string{"true"}}, io.Discard, io.Discard); !errors.Is(err, ErrNoMain) {
		t.Fatalf("got %v, want ErrNoMain", err)
	}
}

// TestSandboxPipes: Pipes are executable files on a read-only
// /dev/pipes that never reach the upper dir.
func TestSandboxPipes(t *testing.T) {
	spec := newSpec(t, []string{busyboxRoot(t)}, "sh", "-c", `/dev/pipes/script && ! touch /dev/pipes/new 2>/dev/null && stat -c %a /dev/pipes/script`)
	spec.Pipes = map[string]string{"script": "#!/bin/sh\necho \"ran $0\"\n"}
	var out bytes.Buffer
	code, err := Run(context.Background(), spec, &out, &out)
	if err != nil || code != 0 {
		t.Fatalf("Run: exit %d, %v\n%s", code, err, out.String())
	}
	if got := out.String(); got != "ran /dev/pipes/script\n755\n" {
		t.Errorf("output %q", got)
	}
	if ents, _ := os.ReadDir(spec.Upper); len(ents) != 0 {
		t.Errorf("the upper dir holds %v", ents)
	}
	spec = newSpec(t, []string{busyboxRoot(t)}, "true")
	spec.Pipes = map[string]string{"../escape": "x"}
	if _, err := Run(context.Background(), spec, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), `bad /dev/pipes name "../escape"`) {
		t.Errorf("a name with a slash: %v", err)
	}
}
