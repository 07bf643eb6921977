package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layercommit/layercommit/internal/oracle"
)

// TestCommitContainerdCLI commits a task of a private containerd 2.3.3's
// k8s.io namespace through the CLI with no --runtime (the one store
// holding the ID is taken) and checks the printed ID is the manifest
// digest; then each bad input is one line naming the problem, a non-zero
// exit and nothing written.
func TestCommitContainerdCLI(t *testing.T) {
	c := oracle.StartContainerd(t, "2.3", "k8s.io")
	id := fmt.Sprintf("lc-cli-%d", os.Getpid())
	c.RunTask(t, c.Base, id, "echo hi > /data/x")
	// A created container whose snapshot dir is then removed.
	gone := id + "-gone"
	c.Run(t, "containers", "create", "--snapshotter", "overlayfs", c.Base, gone, "true")
	mounts := c.Run(t, "snapshots", "--snapshotter", "overlayfs", "mounts", "/x", gone)
	upper := between(mounts, "upperdir=", ",")
	if upper == "" || !strings.HasPrefix(upper, c.Root) {
		t.Fatalf("no upper dir in %q", mounts)
	}
	if err := os.RemoveAll(filepath.Dir(upper)); err != nil {
		t.Fatal(err)
	}
	base := []string{"commit", "-q", "--namespace", "k8s.io", "--containerd-root", c.Root, "--containerd-state", c.State, "--docker-root", t.TempDir(),
		"--storage-root", t.TempDir()}

	t.Run("detected", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "layout")
		out, _ := lc(t, false, append(base, "--container", id, "-o", "oci:"+dir+":c")...)
		b, err := os.ReadFile(filepath.Join(dir, "index.json"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(out, "sha256:") || !strings.Contains(string(b), out) {
			t.Fatalf("printed %q; the layout's index: %s", out, b)
		}
	})
	for _, tc := range []struct {
		name string
		args []string
		msg  string
	}{
		{"unknown container", []string{"--runtime", "containerd", "--container", "nope"}, `container "nope" in namespace k8s.io`},
		{"foreign namespace", []string{"--runtime", "containerd", "--namespace", "moby", "--container", id}, `namespace "moby" in`},
		{"not a containerd root", []string{"--runtime", "containerd", "--containerd-root", t.TempDir(), "--container", id}, "not a containerd root"},
		{"snapshot dir gone", []string{"--runtime", "containerd", "--container", gone}, "snapshot directory gone"},
		{"write into a live daemon", []string{"--runtime", "containerd", "--container", id, "-o", "containerd:lc/x:1"}, "stop it"},
		{"digest destination", []string{"--runtime", "containerd", "--container", id, "-o", "containerd:lc/x@sha256:" + strings.Repeat("a", 64)}, "a name to store takes a tag, not a digest"},
		{"squash", []string{"--runtime", "containerd", "--container", id, "--squash"}, "not supported on containerd"},
		{"podman format", []string{"--runtime", "containerd", "--container", id, "--format", "docker"}, "--format is podman commit's"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "layout")
			args := append(append([]string{}, base...), tc.args...)
			if !strings.Contains(strings.Join(tc.args, " "), " -o ") {
				args = append(args, "-o", "oci:"+dir)
			}
			before := c.Run(t, "images", "ls", "-q")
			_, stderr := lc(t, true, args...)
			if !strings.HasPrefix(stderr, "layercommit: ") || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.msg) {
				t.Errorf("stderr %q, want one layercommit: line containing %q", stderr, tc.msg)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("%s was written (%v)", dir, err)
			}
			if after := c.Run(t, "images", "ls", "-q"); after != before {
				t.Errorf("images changed:\n%s\nbefore:\n%s", after, before)
			}
		})
	}
}

// between is the text of s after the first start, up to end (or the
// end of s).
func between(s, start, end string) string {
	_, rest, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, end)
	return v
}
