package oracle

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Containerd is a private containerd a test starts itself: Debian's
// 1.6.20 (/usr/bin/containerd) or the 2.3.3 that scripts/engines.sh
// builds (LAYERCOMMIT_CONTAINERD2_BIN), with its own root, state dir,
// socket and config under a temp dir, and its ctr. The busybox base of
// the Docker 20.10 oracle is imported into Namespace as Base.
type Containerd struct {
	// Version is "1.6" or "2.3".
	Version string
	// Bin is the containerd binary, Ctr its ctr.
	Bin, Ctr string
	// Root and State are its --root and --state; Address its socket.
	Root, State, Address string
	// Namespace is the one ctr commands use (k8s.io by default).
	Namespace string
	// Base is the imported busybox image's name.
	Base string
	dir  string
	cmd  *exec.Cmd
	log  string
}

// StartContainerd starts a private containerd of version "1.6" or "2.3"
// with namespace ns (empty: k8s.io) and the busybox base imported into
// it; it is stopped and its dirs removed at cleanup. Its config keeps
// every default but the gc scheduler's, which runs only when asked
// (ctr content/snapshot deletion or a restart still collect).
func StartContainerd(t testing.TB, version, ns string) *Containerd {
	t.Helper()
	Root(t)
	c := &Containerd{Version: version, Namespace: ns}
	if c.Namespace == "" {
		c.Namespace = "k8s.io"
	}
	switch version {
	case "1.6":
		c.Bin, c.Ctr = Tool(t, "containerd"), Tool(t, "ctr")
		if out, err := exec.Command(c.Bin, "--version").Output(); err != nil || !strings.Contains(string(out), " 1.6.") {
			Missing(t, "Debian's containerd 1.6 is not %s (%q)", c.Bin, out)
		}
	case "2.3":
		bin := os.Getenv("LAYERCOMMIT_CONTAINERD2_BIN")
		if bin == "" {
			Missing(t, "containerd 2.3.3 not built: source scripts/oracles.sh and run oracles_up")
		}
		c.Bin, c.Ctr = filepath.Join(bin, "containerd"), filepath.Join(bin, "ctr")
	default:
		t.Fatalf("StartContainerd: unknown version %q", version)
	}
	// Short paths: unix socket names are limited to 108 bytes.
	dir, err := os.MkdirTemp("/tmp", "lcc-")
	if err != nil {
		t.Fatal(err)
	}
	c.dir = dir
	c.Root, c.State = filepath.Join(dir, "root"), filepath.Join(dir, "state")
	c.Address = filepath.Join(dir, "c.sock")
	c.log = filepath.Join(dir, "containerd.log")
	t.Cleanup(func() {
		c.Stop(t)
		// Snapshot mounts of tasks that outlived their shim would pin
		// the root; containerd unmounts them on a clean stop.
		os.RemoveAll(dir)
	})
	config := filepath.Join(dir, "config.toml")
	cfg := fmt.Sprintf("root = %q\nstate = %q\n[grpc]\n  address = %q\n", c.Root, c.State, c.Address)
	if version == "2.3" {
		cfg = "version = 3\n" + cfg
	} else {
		cfg = "version = 2\n" + cfg
	}
	if err := os.WriteFile(config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Start(t)
	d := NewDocker(t)
	save := filepath.Join(dir, "base.tar")
	d.Run(t, "save", "-o", save, d.Base)
	c.Run(t, "images", "import", save)
	c.Base = "docker.io/library/" + d.Base
	return c
}

// Start (re)starts the daemon and waits until it answers.
func (c *Containerd) Start(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(c.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	c.cmd = exec.Command(c.Bin, "--config", filepath.Join(c.dir, "config.toml"))
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	// containerd's shims must find Debian's runc (1.6) or the built
	// shim (2.3) first.
	c.cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(c.Bin)+":"+os.Getenv("PATH"))
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting containerd %s: %v", c.Version, err)
	}
	for i := 0; i < 120; i++ {
		if _, _, err := c.Try("version"); err == nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	log, _ := os.ReadFile(c.log)
	t.Fatalf("containerd %s did not answer on %s; its log:\n%s", c.Version, c.Address, log)
}

// Stop stops the daemon (SIGTERM, then SIGKILL after 20 s) and waits for
// it; its tasks are killed first so that no shim outlives it.
func (c *Containerd) Stop(t testing.TB) {
	t.Helper()
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	if out, _, err := c.Try("tasks", "ls", "-q"); err == nil {
		for _, id := range strings.Fields(out) {
			c.Try("tasks", "kill", "-s", "SIGKILL", id)
			c.Try("tasks", "delete", "-f", id)
		}
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
	c.cmd = nil
}

// Try runs a ctr command in c's namespace and returns its stdout and
// stderr.
func (c *Containerd) Try(args ...string) (string, string, error) {
	return try(c.Ctr, append([]string{"--address", c.Address, "--namespace", c.Namespace}, args...)...)
}

// Run runs a ctr command, failing the test on error, and returns its
// trimmed stdout.
func (c *Containerd) Run(t testing.TB, args ...string) string {
	t.Helper()
	return mustRun(t, "ctr", c.Try, args)
}

// NewDocker29Containerd returns the Docker 29.7.1 in containerd image
// store mode (its own supervised containerd 2.3.3 under the data root)
// that scripts/oracles.sh started, with the busybox base loaded.
func NewDocker29Containerd(t testing.TB) *Docker {
	t.Helper()
	return newDocker(t, "LAYERCOMMIT_DOCKER29C", "dockerd 29 (containerd store)")
}

// RunTask starts the task id of image in c's namespace (ctr run -d on
// the overlayfs snapshotter) running the shell script, then touching
// /ready and sleeping, and waits until /ready shows in the task's rootfs
// mount.
func (c *Containerd) RunTask(t testing.TB, image, id, script string) {
	t.Helper()
	c.Run(t, "run", "-d", "--snapshotter", "overlayfs", image, id, "sh", "-c", script+"; touch /ready; exec sleep 3600")
	ready := filepath.Join(c.State, "io.containerd.runtime.v2.task", c.Namespace, id, "rootfs", "ready")
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(ready); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("task %s did not create /ready in 10s", id)
}
