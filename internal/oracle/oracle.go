// Package oracle gives tests the real peers they compare against: root,
// overlayfs, a private dockerd started by scripts/oracles.sh, and the
// command-line tools skopeo, umoci and docker-registry.
//
// A missing oracle skips the test on a laptop and fails it in CI: when CI
// or LAYERCOMMIT_REQUIRE_ORACLES is set, "missing" is an error.
package oracle

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Required reports whether missing oracles must fail tests instead of
// skipping them.
func Required() bool {
	return os.Getenv("LAYERCOMMIT_REQUIRE_ORACLES") != "" || os.Getenv("CI") == "true"
}

// Missing skips the test, or fails it when oracles are required.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf("oracle missing (required in CI): "+format, args...)
	}
	t.Skipf("oracle missing: "+format, args...)
}

// Root needs the test to run as root.
func Root(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "not running as root")
	}
}

// Tool needs a program on PATH and returns its path.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "%s not installed (scripts/oracles.sh installs it)", name)
	}
	return p
}

// Docker is a running dockerd the tests may use.
type Docker struct {
	Host string // -H value, unix://...
	Root string // its --data-root
	Bin  string // the docker client
	Base string // a busybox base image imported into it
}

// NewDocker returns the Debian dockerd 20.10 that scripts/oracles.sh
// started, checking that it answers.
func NewDocker(t testing.TB) *Docker {
	t.Helper()
	return newDocker(t, "LAYERCOMMIT_DOCKER", "dockerd")
}

// NewDocker29 returns the Docker 29.7.1 (graphdriver mode, overlay2) that
// scripts/oracles.sh built and started, with the same busybox base.
func NewDocker29(t testing.TB) *Docker {
	t.Helper()
	return newDocker(t, "LAYERCOMMIT_DOCKER29", "dockerd 29")
}

func newDocker(t testing.TB, prefix, what string) *Docker {
	t.Helper()
	Root(t)
	d := &Docker{
		Host: os.Getenv(prefix + "_HOST"),
		Root: os.Getenv(prefix + "_ROOT"),
		Bin:  os.Getenv("LAYERCOMMIT_DOCKER_BIN"),
		Base: os.Getenv("LAYERCOMMIT_BASE_IMAGE"),
	}
	if d.Host == "" || d.Root == "" || d.Base == "" {
		Missing(t, "%s not started: source scripts/oracles.sh and run oracles_up", what)
	}
	if d.Bin == "" {
		d.Bin = "/usr/bin/docker"
	}
	if _, _, err := d.Try("version"); err != nil {
		Missing(t, "%s at %s does not answer: %v", what, d.Host, err)
	}
	return d
}

// Try runs a docker command and returns its stdout and stderr.
func (d *Docker) Try(args ...string) (string, string, error) {
	return try(d.Bin, append([]string{"-H", d.Host}, args...)...)
}

// Run runs a docker command, failing the test on error, and returns its
// trimmed stdout.
func (d *Docker) Run(t testing.TB, args ...string) string {
	t.Helper()
	return mustRun(t, "docker", d.Try, args)
}

// try runs bin with args and returns its stdout and stderr.
func try(bin string, args ...string) (string, string, error) {
	cmd := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// mustRun runs args through tryFn, failing the test on error (naming the
// command as name), and returns the trimmed stdout.
func mustRun(t testing.TB, name string, tryFn func(...string) (string, string, error), args []string) string {
	t.Helper()
	out, errs, err := tryFn(args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, errs)
	}
	return strings.TrimSpace(out)
}

// SavedLayers runs docker save on image and returns its layer tars, bottom
// first, as manifest.json lists them.
func (d *Docker) SavedLayers(t testing.TB, image string) [][]byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "save.tar")
	d.Run(t, "save", "-o", out, image)
	layers, _ := SavedImage(t, "docker save of "+image, out)
	return layers
}

// SavedImage reads the single-image archive docker save or podman save
// wrote at path and returns its layer tars, bottom first, and its config,
// as manifest.json names them (Docker 20.10's <id>/layer.tar, Docker
// 25+'s blobs/sha256/<diffID>, podman's <digest>.tar). what names the
// archive in failures.
func SavedImage(t testing.TB, what, path string) ([][]byte, []byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading %s: %v", what, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = b
	}
	var m []struct {
		Config string
		Layers []string
	}
	if err := json.Unmarshal(files["manifest.json"], &m); err != nil || len(m) != 1 {
		t.Fatalf("reading manifest.json of %s: %v", what, err)
	}
	var layers [][]byte
	for _, l := range m[0].Layers {
		b, ok := files[l]
		if !ok {
			t.Fatalf("%s has no %s", what, l)
		}
		layers = append(layers, b)
	}
	return layers, files[m[0].Config]
}

// WaitReady waits until the container id has created the file /ready (its
// command's signal that its changes are made), looking in its upper dir.
func (d *Docker) WaitReady(t testing.TB, id string) {
	t.Helper()
	upper := d.Run(t, "inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", id)
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(filepath.Join(upper, "ready")); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("container %s did not create /ready in 10s", id)
}

// tagSeq numbers the tags of this test process.
var tagSeq atomic.Int64

// Tag returns repo with a tag no other test run gives it (the process ID
// and a counter), so that runs sharing a daemon never use each other's
// images.
func Tag(repo string) string {
	return fmt.Sprintf("%s:t%d-%d", repo, os.Getpid(), tagSeq.Add(1))
}
