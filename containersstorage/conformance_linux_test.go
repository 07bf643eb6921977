package containersstorage_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/containersstorage"
	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/internal/oracle"
)

// lowerTree is the image the conformance container runs on.
func lowerTree() []fixtures.Applier {
	return []fixtures.Applier{
		fixtures.CreateDir("lower", 0o755),
		fixtures.CreateFile("lower/mod", []byte("original\n"), 0o644),
		fixtures.CreateFile("lower/del1", []byte("1"), 0o644),
		fixtures.CreateFile("lower/del2", []byte("2"), 0o644),
		fixtures.CreateDir("lower/deldir/sub", 0o755),
		fixtures.CreateFile("lower/deldir/sub/f", []byte("f"), 0o644),
		fixtures.CreateDir("lower/opq/old", 0o755),
		fixtures.CreateFile("lower/opq/keep", []byte("gone"), 0o644),
		fixtures.CreateFile("lower/linkme", []byte("linked\n"), 0o644),
		fixtures.CreateFile("lower/f2d", []byte("file to dir"), 0o644),
		fixtures.CreateDir("lower/d2f/x", 0o755),
		fixtures.CreateFile("lower/renameme", []byte("moved\n"), 0o600),
		fixtures.CreateFile("lower/chmodme", []byte("mode\n"), 0o644),
		fixtures.CreateFile("lower/xattrme", []byte("xattr\n"), 0o644),
	}
}

// changeTree is every kind of change, made through the container's merged
// view so that the kernel's overlayfs writes the upper dir.
func changeTree() []fixtures.Applier {
	long := strings.Repeat("l", 150)
	seg := strings.Repeat("s", 60)
	capV2 := []byte{0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	capV3 := []byte{0, 0, 0, 3, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	t2001 := time.Date(2001, 9, 9, 1, 46, 40, 0, time.UTC)
	return []fixtures.Applier{
		fixtures.CreateFile("lower/mod", []byte("original\nchanged\n"), 0o644),
		fixtures.Remove("lower/del1"),
		fixtures.Remove("lower/del2"),
		fixtures.Remove("lower/deldir"),
		// Opaque over a lower dir, and a new dir made where a deleted
		// one was never present (no marker under podman-4).
		fixtures.Remove("lower/opq"),
		fixtures.CreateDir("lower/opq", 0o6755),
		fixtures.CreateFile("lower/opq/new", []byte("new\n"), 0o644),
		fixtures.Remove("lower/f2d"),
		fixtures.CreateDir("lower/f2d", 0o750),
		fixtures.Remove("lower/d2f"),
		fixtures.CreateFile("lower/d2f", []byte("dir to file"), 0o644),
		fixtures.Rename("lower/renameme", "lower/renamed"),
		fixtures.Chmod("lower/chmodme", 0o600),
		fixtures.Xattr("lower/xattrme", "user.only", []byte("v")),
		fixtures.CreateDir("new", 0o755),
		fixtures.CreateDir("new/a/b/c", 0o755),
		fixtures.Chmod("new/a", 0o700),
		fixtures.Chmod("new/a/b/c", 0o1777),
		fixtures.Symlink("/lower/mod", "new/sym"),
		fixtures.Symlink("/"+long, "new/longtarget"),
		fixtures.CreateFile("new/h1", []byte("hard\n"), 0o644),
		fixtures.Link("new/h1", "new/h2"),
		fixtures.Link("lower/linkme", "new/tolower"),
		fixtures.Fifo("new/fifo", 0o644),
		fixtures.Mknod("new/chr", unix.S_IFCHR|0o644, 1, 3),
		fixtures.Mknod("new/blk", unix.S_IFBLK|0o640, 7, 0),
		fixtures.Socket("new/sock"),
		fixtures.CreateFile("new/suid", []byte("#!/bin/sh\n"), 0o755),
		fixtures.Chmod("new/suid", 0o4755),
		fixtures.CreateFile("new/u70000", []byte("u"), 0o644),
		fixtures.Chown("new/u70000", 70000, 70001),
		fixtures.CreateFile("new/"+long, []byte("long"), 0o644),
		fixtures.CreateDir("new/"+seg+"/"+seg, 0o755),
		fixtures.CreateFile("new/"+seg+"/"+seg+"/f", []byte("split"), 0o644),
		fixtures.CreateFile("new/caf\xc3\xa9", []byte("utf8"), 0o644),
		fixtures.CreateFile("new/t-old", nil, 0o644),
		fixtures.Chtimes("new/t-old", t2001, time.Unix(-1000000, 0)),
		fixtures.CreateFile("new/t-nano", nil, 0o644),
		fixtures.Chtimes("new/t-nano", t2001, time.Unix(1000000000, 999999999)),
		fixtures.CreateFile("new/cap2", []byte("c"), 0o755),
		fixtures.Xattr("new/cap2", "security.capability", capV2),
		fixtures.CreateFile("new/cap3", []byte("c"), 0o755),
		fixtures.Xattr("new/cap3", "security.capability", capV3),
		fixtures.Xattr("new/cap2", "user.alpha", []byte("a")),
		fixtures.Xattr("new/cap2", "trusted.beta", []byte("b")),
		fixtures.Xattr("new/a", "user.dir", []byte("d")),
		fixtures.CreateFile("new/empty", nil, 0o644),
		fixtures.CreateDir("new/many", 0o755),
		fixtures.Many("new/many", "f", 300),
	}
}

// podmanCommit is a container changed through its merged view and
// committed by the real podman.
type podmanCommit struct {
	id, lowerID string
	// want and wantLower are podman's layers of the two containers.
	want, wantLower []byte
}

func commitThroughPodman(t *testing.T, p *oracle.Podman) podmanCommit {
	t.Helper()
	lowerID := p.Container(t, p.Base)
	if err := fixtures.Apply(p.Run(t, "inspect", "-f", "{{.GraphDriver.Data.MergedDir}}", lowerID), lowerTree()...); err != nil {
		t.Fatal(err)
	}
	p.Run(t, "commit", "-q", lowerID, "conf-lower")
	id := p.Container(t, "conf-lower")
	if err := fixtures.Apply(p.Run(t, "inspect", "-f", "{{.GraphDriver.Data.MergedDir}}", id), changeTree()...); err != nil {
		t.Fatal(err)
	}
	p.Run(t, "commit", "-q", id, "conf-commit")
	layers, _ := p.SavedLayers(t, "conf-commit")
	return podmanCommit{id: id, lowerID: lowerID, want: layers[len(layers)-1], wantLower: layers[len(layers)-2]}
}

// TestPodmanCommitConformance: the podman-4 profile's layer of a podman
// container's upper dir, found through the store on disk, is the layer
// podman 4.3 commits, byte for byte.
func TestPodmanCommitConformance(t *testing.T) {
	p := oracle.NewPodman(t)
	c := commitThroughPodman(t, p)
	s, err := containersstorage.Open(p.Root, p.RunRoot)
	if err != nil {
		t.Fatal(err)
	}
	ctr, err := s.Container(c.id)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, _, err := diff.Write(context.Background(), &got, containersstorage.Changes(ctr.UpperDir, ctr.Lowers, compat.Podman4), diff.WithCompat(compat.Podman4)); err != nil {
		t.Fatal(err)
	}
	compareTars(t, "podman-4 vs podman commit", got.Bytes(), c.want)
	index := strings.Join(tarIndex(got.Bytes()), "\n")
	t.Logf("layer: %d bytes, %d entries, diffID %s", got.Len(), len(tarIndex(got.Bytes())), sha(got.Bytes()))
	for _, entry := range []string{`"lower/.wh.del1" type=0 mode=0 `, `"lower/opq/.wh..wh..opq"`, `"new/cap2" type=0 mode=100755 uid=0 gid=0 uname="" gname="" mtime=`, `SCHILY.xattr.user.alpha:a`, `"new/h2" type=1`} {
		if !strings.Contains(index, entry) {
			t.Errorf("layer lacks %s", entry)
		}
	}
	// The first container's layer holds the files podman creates as
	// mount targets (/etc/hosts, /etc/hostname, /run/.containerenv) and
	// the dirs of its mounts: podman commits them as they are.
	lower, err := s.Container(c.lowerID)
	if err != nil {
		t.Fatal(err)
	}
	var gotLower bytes.Buffer
	if _, _, err := diff.Write(context.Background(), &gotLower, containersstorage.Changes(lower.UpperDir, lower.Lowers, compat.Podman4), diff.WithCompat(compat.Podman4)); err != nil {
		t.Fatal(err)
	}
	compareTars(t, "podman-4 vs podman commit (first container)", gotLower.Bytes(), c.wantLower)
	index = strings.Join(tarIndex(gotLower.Bytes()), "\n")
	for _, entry := range []string{`"run/.containerenv" type=0 mode=100755`, `"etc/hosts" type=0`, `"etc/hostname" type=0`, `"proc/" type=5`} {
		if !strings.Contains(index, entry) {
			t.Errorf("first layer lacks %s", entry)
		}
	}
	// The same upper dir under docker-24 differs: the profile matters.
	var other bytes.Buffer
	if _, _, err := diff.Write(context.Background(), &other, diff.Overlay(ctr.UpperDir), diff.WithCompat(compat.Docker24)); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(other.Bytes(), c.want) {
		t.Errorf("docker-24 also matches podman: the test proves nothing")
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func compareTars(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	g, w := tarIndex(got), tarIndex(want)
	for i := 0; i < len(g) || i < len(w); i++ {
		var a, b string
		if i < len(g) {
			a = g[i]
		}
		if i < len(w) {
			b = w[i]
		}
		if a != b {
			t.Fatalf("%s: %s != %s; entry %d:\n got %s\nwant %s", what, sha(got), sha(want), i, a, b)
		}
	}
	t.Fatalf("%s: same headers, bytes differ (%d vs %d bytes)", what, len(got), len(want))
}

func tarIndex(b []byte) []string {
	var out []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err != nil {
			if err != io.EOF {
				out = append(out, "error: "+err.Error())
			}
			return out
		}
		body, _ := io.ReadAll(tr)
		out = append(out, fmt.Sprintf("%q type=%c mode=%o uid=%d gid=%d uname=%q gname=%q mtime=%d size=%d link=%q dev=%d,%d pax=%v format=%v body=%s",
			h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime.Unix(), h.Size, h.Linkname, h.Devmajor, h.Devminor, h.PAXRecords, h.Format, sha(body)[:15]))
	}
}
