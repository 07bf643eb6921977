package oracle

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Podman is Debian's podman 4.3.1 on a private containers-storage store
// (overlay driver) under a temp dir, with the busybox base of the Docker
// 20.10 oracle loaded into it as Base.
type Podman struct {
	Bin           string
	Root, RunRoot string
	// TmpDir is libpod's --tmpdir, private too: podman's default,
	// /run/libpod, is shared by every store, and removing one store's
	// state there breaks another's.
	TmpDir string
	Base   string
}

// NewPodman starts nothing (podman is daemonless): it makes a fresh store
// under t.TempDir(), loads the base image from the Docker 20.10 oracle
// (docker save, podman load) and removes every container and mount at
// cleanup.
func NewPodman(t testing.TB) *Podman {
	t.Helper()
	Root(t)
	d := NewDocker(t)
	p := &Podman{Bin: Tool(t, "podman")}
	dir := t.TempDir()
	p.Root, p.RunRoot, p.TmpDir = filepath.Join(dir, "root"), filepath.Join(dir, "run"), filepath.Join(dir, "tmp")
	t.Cleanup(func() { p.cleanup() })
	save := filepath.Join(dir, "base.tar")
	d.Run(t, "save", "-o", save, d.Base)
	out := p.Run(t, "load", "-q", "-i", save)
	// "Loaded image: localhost/NAME:TAG"
	if !strings.HasPrefix(out, "Loaded image:") {
		t.Fatalf("podman load: %q", out)
	}
	p.Base = strings.TrimSpace(strings.TrimPrefix(out, "Loaded image:"))
	return p
}

// Args are the global flags every podman command gets.
func (p *Podman) Args() []string {
	return []string{"--root", p.Root, "--runroot", p.RunRoot, "--tmpdir", p.TmpDir, "--storage-driver", "overlay",
		"--cgroup-manager", "cgroupfs", "--events-backend", "file"}
}

// Try runs a podman command and returns its stdout and stderr.
func (p *Podman) Try(args ...string) (string, string, error) {
	return try(p.Bin, append(p.Args(), args...)...)
}

// Run runs a podman command, failing the test on error, and returns its
// trimmed stdout.
func (p *Podman) Run(t testing.TB, args ...string) string {
	t.Helper()
	return mustRun(t, "podman", p.Try, args)
}

// RunFlags are the podman run flags this machine needs: no network, and
// limits under its hard limits (podman's defaults are above them).
var RunFlags = []string{"--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"}

// Container starts a detached container of image running sleep and
// returns its ID.
func (p *Podman) Container(t testing.TB, image string) string {
	t.Helper()
	args := append(append([]string{"run", "-d"}, RunFlags...), image, "sleep", "3600")
	return p.Run(t, args...)
}

// SavedLayers runs podman save (docker-archive: uncompressed layers, the
// bytes containers-storage rebuilds from its tar-split) and returns the
// image's layer tars, bottom first, and its config.
func (p *Podman) SavedLayers(t testing.TB, image string) ([][]byte, []byte) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "save.tar")
	p.Run(t, "save", "-q", "--format", "docker-archive", "-o", out, image)
	return SavedImage(t, "podman save of "+image, out)
}

// cleanup removes the containers and images, then unmounts whatever
// podman left mounted under the store so the temp dir can go.
func (p *Podman) cleanup() {
	p.Try("rm", "-af", "-t", "0")
	p.Try("rmi", "-af")
	p.waitStoreProcesses()
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return
	}
	var mounts []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 1 && (strings.HasPrefix(fields[1], p.Root+"/") || strings.HasPrefix(fields[1], p.RunRoot+"/")) {
			mounts = append(mounts, fields[1])
		}
	}
	f.Close()
	for i := len(mounts) - 1; i >= 0; i-- {
		unix.Unmount(mounts[i], unix.MNT_DETACH)
	}
}

// waitStoreProcesses waits (up to 30 s, then kills them) for the
// processes that name this store on their command line: conmon and the
// `podman container cleanup` it starts when a container exits run on
// after `podman rm` returns and still write under the store and its
// tmpdir, which would race the temp dir's removal.
func (p *Podman) waitStoreProcesses() {
	deadline := time.Now().Add(30 * time.Second)
	for {
		pids := p.storeProcesses()
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, pid := range pids {
				unix.Kill(pid, unix.SIGKILL)
			}
			time.Sleep(100 * time.Millisecond)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// storeProcesses lists the pids (not this one) whose command line holds
// the store's root or run root.
func (p *Podman) storeProcesses() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmd := string(b)
		if strings.Contains(cmd, p.Root) || strings.Contains(cmd, p.RunRoot) || strings.Contains(cmd, p.TmpDir) {
			pids = append(pids, pid)
		}
	}
	return pids
}
