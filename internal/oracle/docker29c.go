package oracle

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Docker29C is a private Docker 29.7.1 on its containerd image store (the
// containerd 2.3.3 it supervises under Root/containerd/daemon), which a
// test starts and stops itself, e.g. to write into its store while it is
// down. The shared one (NewDocker29Containerd) is never stopped.
type Docker29C struct {
	Docker
	dir, dockerd, path string
	cmd                *exec.Cmd
}

// StartDocker29Containerd starts a private dockerd 29 in containerd image
// store mode with the flags and config of scripts/oracles.sh's shared
// one, on a fresh data root, and loads the busybox base of the Docker
// 20.10 oracle into it (as Base). It is stopped and removed at cleanup.
func StartDocker29Containerd(t testing.TB) *Docker29C {
	t.Helper()
	Root(t)
	bin := os.Getenv("LAYERCOMMIT_CONTAINERD2_BIN")
	if bin == "" {
		Missing(t, "containerd 2.3.3 not built: source scripts/oracles.sh and run oracles_up")
	}
	// scripts/engines.sh keeps each engine under one dir keyed by version.
	dockerd := filepath.Join(filepath.Dir(filepath.Dir(bin)), "dockerd-v2.0.0-beta.21", "bin", "dockerd")
	if _, err := os.Stat(dockerd); err != nil {
		Missing(t, "dockerd 29 not built at %s", dockerd)
	}
	dir, err := os.MkdirTemp("/tmp", "lcdc-")
	if err != nil {
		t.Fatal(err)
	}
	d := &Docker29C{dir: dir, dockerd: dockerd, path: filepath.Dir(dockerd) + ":" + bin + ":" + os.Getenv("PATH")}
	d.Root = filepath.Join(dir, "root")
	d.Host = "unix://" + filepath.Join(dir, "d.sock")
	d.Bin = os.Getenv("LAYERCOMMIT_DOCKER_BIN")
	if d.Bin == "" {
		d.Bin = "/usr/bin/docker"
	}
	t.Cleanup(func() {
		d.Stop(t)
		os.RemoveAll(dir)
	})
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte(`{"features":{"time-namespaces":false,"containerd-snapshotter":true}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	d.Start(t)
	src := NewDocker(t)
	save := filepath.Join(dir, "base.tar")
	src.Run(t, "save", "-o", save, src.Base)
	d.Run(t, "load", "-q", "-i", save)
	d.Base = src.Base
	return d
}

// ContainerdAddress is the socket of the containerd the daemon
// supervises, for ctr (namespace moby).
func (d *Docker29C) ContainerdAddress() string {
	return filepath.Join(d.dir, "x", "containerd", "containerd.sock")
}

// Start (re)starts the daemon and waits until it answers.
func (d *Docker29C) Start(t testing.TB) {
	t.Helper()
	logPath := filepath.Join(d.dir, "dockerd.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.cmd = exec.Command(d.dockerd, "--config-file", filepath.Join(d.dir, "daemon.json"),
		"--data-root", d.Root, "--exec-root", filepath.Join(d.dir, "x"), "-H", d.Host,
		"--pidfile", filepath.Join(d.dir, "docker.pid"), "--iptables=false", "--ip6tables=false",
		"--bridge=none", "--userland-proxy=false")
	d.cmd.Env = append(os.Environ(), "PATH="+d.path)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting dockerd 29: %v", err)
	}
	for i := 0; i < 120; i++ {
		if _, _, err := d.Try("version"); err == nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	log, _ := os.ReadFile(logPath)
	t.Fatalf("dockerd 29 (containerd store) did not start:\n%s", tail(string(log), 20))
}

// Stop stops the daemon (SIGTERM, SIGKILL after 30 s) and waits for it
// and so for the containerd it supervises, which it stops on exit.
func (d *Docker29C) Stop(t testing.TB) {
	t.Helper()
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	// dockerd stops the containerd it supervises on exit; wait for that
	// one too, whose locks on its dbs a writer waits for.
	pid := 0
	if b, err := os.ReadFile(filepath.Join(d.dir, "x", "containerd", "containerd.pid")); err == nil {
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-done
	}
	d.cmd = nil
	for i := 0; pid > 0 && i < 200 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(100 * time.Millisecond)
	}
}
