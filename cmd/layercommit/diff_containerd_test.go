package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/internal/oracle"
)

// TestDiffCompatContainerd: layercommit diff --compat containerd --lower
// L1 --lower L2 UPPER writes the tar containerd 2.3.3's ctr snapshots
// diff writes for the same active snapshot (two lowers: the busybox base
// and a layer of its own), byte for byte, and prints its diffID.
func TestDiffCompatContainerd(t *testing.T) {
	c := oracle.StartContainerd(t, "2.3", "")
	bases := c.CommittedSnapshots(t)
	if len(bases) != 1 {
		t.Fatalf("want the base's one committed snapshot, got %q", bases)
	}
	low := c.PrepareSnapshot(t, "lower-active", bases[0])
	mnt := filepath.Join(t.TempDir(), "mnt")
	unmount := low.Mount(t, mnt)
	if err := fixtures.Apply(mnt,
		fixtures.CreateDir("data/keep", 0o755),
		fixtures.CreateFile("data/keep/f", []byte("kept"), 0o644),
		fixtures.CreateFile("data/gone", []byte("gone"), 0o644),
		fixtures.CreateFile("data/mod", []byte("before"), 0o644),
	); err != nil {
		t.Fatal(err)
	}
	unmount()
	c.Run(t, "snapshots", "commit", "lower", low.Key)
	snap := c.PrepareSnapshot(t, "upper", "lower")
	unmount = snap.Mount(t, mnt)
	if err := fixtures.Apply(mnt,
		fixtures.Remove("data/gone"),
		fixtures.Remove("bin/cat"),
		fixtures.CreateFile("data/mod", []byte("after!"), 0o644),
		fixtures.CreateFile("data/keep/tmp", nil, 0o644),
		fixtures.Remove("data/keep/tmp"), // data/keep: only its mtime changed
		fixtures.Link("bin/busybox", "data/bb"),
	); err != nil {
		t.Fatal(err)
	}
	unmount()
	if len(snap.Lowers) != 2 {
		t.Fatalf("want two lowers, got %q", snap.Lowers)
	}
	blob, errs, err := c.Try("snapshots", "diff", snap.Key)
	if err != nil {
		t.Fatalf("ctr snapshots diff: %v: %s", err, errs)
	}
	zr, err := gzip.NewReader(strings.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	want, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(t.TempDir(), "layer.tar")
	code, stdout, stderr := cli("diff", "--compat", "containerd", "--lower", snap.Lowers[0], "--lower", snap.Lowers[1], "-o", out, snap.Upper)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("layer differs from ctr snapshots diff's: %d vs %d bytes", len(got), len(want))
	}
	sum := sha256.Sum256(got)
	if lines := strings.Split(strings.TrimSpace(stdout), "\n"); lines[len(lines)-1] != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("last stdout line %q is not the diffID", stdout)
	}
	for _, name := range []string{"data/.wh.gone", "bin/.wh.cat", "data/mod", "data/bb", "bin/busybox"} {
		if !bytes.Contains(got, []byte(name)) {
			t.Errorf("layer lacks %s", name)
		}
	}
	if bytes.Contains(got, []byte("data/keep/")) {
		t.Errorf("layer holds data/keep/, whose only change is its mtime")
	}
}

func TestDiffCompatContainerdBadInput(t *testing.T) {
	oracle.Root(t)
	tmp := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"userxattr", []string{"--compat", "containerd", "--userxattr", tmp}, "--userxattr"},
		{"missing lower", []string{"--compat", "containerd", "--lower", filepath.Join(tmp, "nope"), "--lower", tmp, tmp}, "lower dir"},
		{"missing upper", []string{"--compat", "containerd", "--lower", tmp, filepath.Join(tmp, "nope")}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outDir := t.TempDir()
			code, stdout, stderr := cli(append([]string{"diff", "-o", filepath.Join(outDir, "layer.tar")}, tc.args...)...)
			if code == 0 {
				t.Fatalf("exit 0, stdout %q", stdout)
			}
			assertOneLineError(t, stderr, tc.want)
			assertEmptyDir(t, outDir)
		})
	}
}
