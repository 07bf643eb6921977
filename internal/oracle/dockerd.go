package oracle

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Daemon is a private dockerd a test starts and stops itself, on its own
// data root, for tests that must stop the daemon (the shared one of
// scripts/oracles.sh serves other tests meanwhile).
type Daemon struct {
	Docker
	exec    string
	cmd     *exec.Cmd
	log     string
	dockerd string
	args    []string // further dockerd flags
}

// StartDaemon starts a private dockerd with a fresh data root, the
// further dockerd flags args (e.g. --experimental) and the busybox base
// image imported. It is stopped and removed at cleanup.
func StartDaemon(t testing.TB, args ...string) *Daemon {
	t.Helper()
	Root(t)
	dockerd := Tool(t, "dockerd")
	Tool(t, "busybox")
	// Short paths: unix socket names are limited to 108 bytes.
	dir, err := os.MkdirTemp("/tmp", "lcd-")
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{exec: filepath.Join(dir, "x"), log: filepath.Join(dir, "dockerd.log")}
	d.Root = filepath.Join(dir, "root")
	d.Host = "unix://" + filepath.Join(dir, "d.sock")
	d.Bin = os.Getenv("LAYERCOMMIT_DOCKER_BIN")
	if d.Bin == "" {
		d.Bin = "/usr/bin/docker"
	}
	d.Base = "layercommit-base:busybox"
	t.Cleanup(func() {
		d.Stop(t)
		os.RemoveAll(dir)
	})
	d.dockerd, d.args = dockerd, args
	d.Start(t)
	importBase(t, &d.Docker)
	return d
}

// Start (re)starts the daemon and waits until it answers.
func (d *Daemon) Start(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(d.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.cmd = exec.Command(d.dockerd, "--data-root", d.Root, "--exec-root", d.exec, "-H", d.Host,
		"--pidfile", filepath.Join(d.exec, "docker.pid"), "--iptables=false", "--ip6tables=false",
		"--bridge=none", "--storage-driver=overlay2")
	d.cmd.Args = append(d.cmd.Args, d.args...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting dockerd: %v", err)
	}
	for i := 0; i < 120; i++ {
		if _, _, err := d.Try("version"); err == nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	log, _ := os.ReadFile(d.log)
	t.Fatalf("dockerd did not start:\n%s", tail(string(log), 20))
}

// Stop stops the daemon and waits for it to exit.
func (d *Daemon) Stop(t testing.TB) {
	t.Helper()
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-done
	}
	d.cmd = nil
}

// Log returns the end of the daemon's log.
func (d *Daemon) Log() string {
	b, _ := os.ReadFile(d.log)
	return tail(string(b), 30)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// importBase imports a busybox-static rootfs as d.Base.
func importBase(t testing.TB, d *Docker) {
	t.Helper()
	entries := Busybox(t, "sh", "ls", "cat", "echo", "mkdir", "rm", "mv", "cp", "ln", "touch", "chmod", "chown", "stat", "sleep", "true", "env", "id", "find")
	for _, dir := range []string{"etc/", "tmp/", "data/", "root/"} {
		entries = append(entries, Dir(dir, 0o755))
	}
	entries = append(entries,
		File("etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
		File("etc/group", 0o644, "root:x:0:\nnogroup:x:65534:\n"),
		File("data/basefile", 0o644, "base file\n"))
	d.Import(t, d.Base, entries)
}

// TarEntry is one entry of a tar that Import gives docker import.
type TarEntry struct {
	Header tar.Header
	Body   []byte
}

// Dir is a directory entry.
func Dir(name string, mode int64) TarEntry {
	return TarEntry{Header: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode}}
}

// File is a regular file entry.
func File(name string, mode int64, body string) TarEntry {
	return TarEntry{Header: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body))}, Body: []byte(body)}
}

// Busybox is a busybox-static root and nothing else: bin/busybox and its
// applets as symlinks to it.
func Busybox(t testing.TB, applets ...string) []TarEntry {
	t.Helper()
	data, err := os.ReadFile(Tool(t, "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	entries := []TarEntry{Dir("bin/", 0o755), {Header: tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(data))}, Body: data}}
	for _, a := range applets {
		entries = append(entries, TarEntry{Header: tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777}})
	}
	return entries
}

// Import writes entries (times fixed) as a tar and docker-imports it as
// ref.
func (d *Docker) Import(t testing.TB, ref string, entries []TarEntry) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.Header
		h.ModTime = time.Unix(1700000000, 0)
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.Body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(d.Bin, "-H", d.Host, "import", "-", ref)
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker import: %v\n%s", err, out)
	}
}

// String names the daemon in messages.
func (d *Daemon) String() string { return fmt.Sprintf("dockerd on %s", d.Root) }
