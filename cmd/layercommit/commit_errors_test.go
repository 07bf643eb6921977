package main

import (
	"bytes"
	"math/rand"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/internal/oracle"
)

// snapshot is fixtures.Snapshot, for "nothing changed" comparisons.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	return fixtures.Snapshot(dir)
}

func TestCommitBadInput(t *testing.T) {
	oracle.Root(t)
	stage1, _ := commitUppers(t)
	dir := t.TempDir()
	layout := filepath.Join(dir, "layout")
	lc(t, false, "commit", "-q", "--upper", stage1, "-o", "oci:"+layout+":v1")
	archive := filepath.Join(dir, "docker.tar")
	lc(t, false, "commit", "-q", "--upper", stage1, "-o", "docker-archive:"+archive)
	before := snapshot(t, dir)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown transport", []string{"--upper", stage1, "-o", "ftp:" + layout}, `unknown transport "ftp"`},
		{"no transport", []string{"--upper", stage1, "-o", layout}, "has no transport"},
		{"unreadable base", []string{"--from", "oci:" + filepath.Join(dir, "nope") + ":v1", "--upper", stage1, "-o", "oci:" + filepath.Join(dir, "out")}, "reading oci:"},
		{"unreadable base archive", []string{"--from", "docker-archive:" + filepath.Join(dir, "nope.tar"), "--upper", stage1, "-o", "oci:" + layout + ":v2"}, "no such file"},
		{"missing tag", []string{"--from", "oci:" + layout + ":v9", "--upper", stage1, "-o", "oci:" + layout + ":v2"}, `no image tagged "v9"`},
		{"docker-root without a root", []string{"--docker-root", filepath.Join(dir, "noroot"), "--from", "docker-root:busybox", "--upper", stage1, "-o", "oci:" + layout + ":v2"}, "no such file"},
		{"docker-root destination without a root", []string{"--docker-root", filepath.Join(dir, "noroot"), "--upper", stage1, "-o", "docker-root:x:y"}, "no such file"},
		{"scratch destination", []string{"--upper", stage1, "-o", "scratch"}, "scratch is not a destination"},
		{"bad change", []string{"--upper", stage1, "-c", "RUN rm -rf /", "-o", "oci:" + layout + ":v2"}, "run is not a valid change command"},
		{"missing upper", []string{"--upper", filepath.Join(dir, "nope"), "-o", "oci:" + layout + ":v2"}, "reading upper dir"},
		{"zstd on docker base", []string{"--from", "docker-archive:" + archive, "--compression", "zstd", "--upper", stage1, "-o", "oci:" + layout + ":v2"}, "zstd layers need an OCI image"},
		{"bad level", []string{"--compression-level", "99", "--upper", stage1, "-o", "oci:" + layout + ":v2"}, "gzip level 99 out of range"},
		{"not a layout", []string{"--upper", stage1, "-o", "oci:" + stage1}, "neither empty nor an OCI layout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr := lc(t, true, append([]string{"commit", "-q"}, tc.args...)...)
			assertCommitError(t, stderr, tc.want)
			if after := snapshot(t, dir); after != before {
				t.Fatalf("the failed commit changed the destination:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// TestCommitDiskFull fills a small tmpfs: the commit fails with one line,
// the layout keeps its earlier tag and no temp file is left.
func TestCommitDiskFull(t *testing.T) {
	oracle.Root(t)
	stage1, _ := commitUppers(t)
	big := t.TempDir()
	data := make([]byte, 3<<20)
	rand.New(rand.NewSource(1)).Read(data)
	must(t, fixtures.Apply(big, fixtures.CreateFile("random", data, 0o644)))

	full := t.TempDir()
	if err := unix.Mount("tmpfs", full, "tmpfs", 0, "size=1m"); err != nil {
		oracle.Missing(t, "cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(full, unix.MNT_DETACH) })
	layout := filepath.Join(full, "layout")
	lc(t, false, "commit", "-q", "--upper", stage1, "-o", "oci:"+layout+":v1")
	before := snapshot(t, full)
	for _, tc := range []struct{ name, dest string }{
		{"oci", "oci:" + layout + ":v2"},
		{"oci same tag", "oci:" + layout + ":v1"},
		{"docker-archive", "docker-archive:" + filepath.Join(full, "out.tar") + ":x:y"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, comp := range []string{"none", "gzip"} {
				_, stderr := lc(t, true, "commit", "-q", "--compression", comp, "--upper", big, "-o", tc.dest)
				assertCommitError(t, stderr, "no space left on device")
				if after := snapshot(t, full); after != before {
					t.Fatalf("the failed commit changed the tmpfs:\nbefore:\n%s\nafter:\n%s", before, after)
				}
			}
		})
	}
	checkImage(t, "oci:"+layout+":v1")
	var out bytes.Buffer
	if run([]string{"inspect", "oci:" + layout + ":v1"}, &out, &out) != 0 {
		t.Fatalf("inspect after disk full: %s", out.String())
	}
}
