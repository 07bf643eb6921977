package diff_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	goarchive "github.com/moby/go-archive"
	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/internal/oracle"
	"github.com/layercommit/layercommit/internal/overlay"
	"github.com/layercommit/layercommit/unpack"
)

// lowerTree is the content of the image the conformance container runs
// on: what the changes below modify, delete, replace and link to.
func lowerTree() []fixtures.Applier {
	return []fixtures.Applier{
		fixtures.CreateDir("lower", 0o755),
		fixtures.CreateFile("lower/mod", []byte("original\n"), 0o644),
		fixtures.CreateFile("lower/del1", []byte("1"), 0o644),
		fixtures.CreateFile("lower/del2", []byte("2"), 0o644),
		fixtures.CreateFile("lower/del3", []byte("3"), 0o644),
		fixtures.CreateDir("lower/deldir/sub", 0o755),
		fixtures.CreateFile("lower/deldir/sub/f", []byte("f"), 0o644),
		fixtures.CreateDir("lower/opq/old", 0o755),
		fixtures.CreateFile("lower/opq/old/f", []byte("old"), 0o644),
		fixtures.CreateFile("lower/opq/keep", []byte("gone after rm -rf"), 0o644),
		fixtures.CreateFile("lower/linkme", []byte("linked from the upper\n"), 0o644),
		fixtures.CreateFile("lower/f2d", []byte("file to dir"), 0o644),
		fixtures.CreateDir("lower/d2f/x", 0o755),
		fixtures.CreateDir("lower/d2s/x", 0o755),
		fixtures.CreateFile("lower/renameme", []byte("moved\n"), 0o600),
		fixtures.CreateFile("lower/chmodme", []byte("mode only\n"), 0o644),
		fixtures.CreateFile("lower/xattrme", []byte("xattrs only\n"), 0o644),
	}
}

// changeTree is every kind of change the issue lists, made through the
// container's merged view so that overlayfs writes the upper dir itself.
func changeTree() []fixtures.Applier {
	long := strings.Repeat("l", 150)
	seg := strings.Repeat("s", 60)
	big := strings.Repeat("b", 200)
	capV2 := []byte{0x00, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	capV3 := []byte{0x00, 0x00, 0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	t2001 := time.Date(2001, 9, 9, 1, 46, 40, 0, time.UTC)
	return []fixtures.Applier{
		// Modified, deleted (several: the kernel shares one whiteout
		// inode), deleted dir, deleted-then-recreated dir.
		fixtures.CreateFile("lower/mod", []byte("original\nchanged\n"), 0o644),
		fixtures.Remove("lower/del1"),
		fixtures.Remove("lower/del2"),
		fixtures.Remove("lower/del3"),
		fixtures.Remove("lower/deldir"),
		fixtures.Remove("lower/opq"),
		fixtures.CreateDir("lower/opq", 0o6755),
		fixtures.CreateFile("lower/opq/new", []byte("new\n"), 0o644),
		// Replacements and renames.
		fixtures.Remove("lower/f2d"),
		fixtures.CreateDir("lower/f2d", 0o750),
		fixtures.Remove("lower/d2f"),
		fixtures.CreateFile("lower/d2f", []byte("dir to file"), 0o644),
		fixtures.Remove("lower/d2s"),
		fixtures.Symlink("../lower/mod", "lower/d2s"),
		fixtures.Rename("lower/renameme", "lower/renamed"),
		fixtures.Chmod("lower/chmodme", 0o600),
		fixtures.Xattr("lower/xattrme", "user.only", []byte("v")),
		// New nested dirs with unusual modes.
		fixtures.CreateDir("new/a/b/c", 0o755),
		fixtures.Chmod("new/a", 0o700),
		fixtures.Chmod("new/a/b", 0o751),
		fixtures.Chmod("new/a/b/c", 0o1777),
		fixtures.CreateDir("new/sgid", 0o2775),
		// Symlinks, dangling too, and one with a target over 100 bytes.
		fixtures.Symlink("/lower/mod", "new/sym"),
		fixtures.Symlink("/nowhere/at/all", "new/dangling"),
		fixtures.Symlink("/"+long, "new/longtarget"),
		// Hard links inside the layer and to a file of a lower layer.
		fixtures.CreateFile("new/h1", []byte("hard\n"), 0o644),
		fixtures.Link("new/h1", "new/h2"),
		fixtures.Link("new/h1", "new/a_h0"),
		fixtures.Link("lower/linkme", "new/tolower"),
		// Special files.
		fixtures.Fifo("new/fifo", 0o644),
		fixtures.Mknod("new/chr", unix.S_IFCHR|0o644, 1, 3),
		fixtures.Mknod("new/blk", unix.S_IFBLK|0o640, 7, 0),
		fixtures.Socket("new/sock"),
		// setuid, setgid, sticky.
		fixtures.CreateFile("new/suid", []byte("#!/bin/sh\n"), 0o4755),
		fixtures.Chmod("new/suid", 0o4755),
		fixtures.CreateFile("new/sgid-sticky", []byte("x"), 0o644),
		fixtures.Chmod("new/sgid-sticky", 0o3750),
		// Large ids.
		fixtures.CreateFile("new/u70000", []byte("u"), 0o644),
		fixtures.Chown("new/u70000", 70000, 70001),
		fixtures.CreateFile("new/u3000000", []byte("u"), 0o644),
		fixtures.Chown("new/u3000000", 3000000, 3000001),
		fixtures.CreateDir("new/nobody", 0o755),
		fixtures.Chown("new/nobody", 65534, 65534),
		// Long names: over 100 bytes, splittable, and over 255 in total.
		fixtures.CreateFile("new/"+long, []byte("long"), 0o644),
		fixtures.CreateDir("new/"+seg+"/"+seg, 0o755),
		fixtures.CreateFile("new/"+seg+"/"+seg+"/f", []byte("split"), 0o644),
		fixtures.CreateDir("new/"+big+"/"+big, 0o755),
		fixtures.CreateFile("new/"+big+"/"+big+"/deep", []byte("deep"), 0o644),
		fixtures.CreateFile("new/"+strings.Repeat("x", 100), nil, 0o644),
		// Non-UTF-8 and non-ASCII names.
		fixtures.CreateFile("new/caf\xc3\xa9", []byte("utf8"), 0o644),
		fixtures.CreateFile("new/\xe9t\xe9", []byte("latin1"), 0o644),
		fixtures.CreateFile("new/日本語", nil, 0o644),
		// Times: before 1970, far in the future, with nanoseconds.
		fixtures.CreateFile("new/t-old", nil, 0o644),
		fixtures.Chtimes("new/t-old", t2001, time.Unix(-1000000, 0)),
		fixtures.CreateFile("new/t-future", nil, 0o644),
		fixtures.Chtimes("new/t-future", t2001, time.Date(2500, 1, 1, 0, 0, 0, 0, time.UTC)),
		fixtures.CreateFile("new/t-nano", nil, 0o644),
		fixtures.Chtimes("new/t-nano", t2001, time.Unix(1000000000, 999999999)),
		fixtures.CreateFile("new/t-2001", []byte("2001"), 0o644),
		fixtures.Chtimes("new/t-2001", t2001, t2001),
		// xattrs: only security.capability survives, v3 becomes v2.
		fixtures.CreateFile("new/cap2", []byte("c"), 0o755),
		fixtures.Xattr("new/cap2", "security.capability", capV2),
		fixtures.CreateFile("new/cap3", []byte("c"), 0o755),
		fixtures.Xattr("new/cap3", "security.capability", capV3),
		fixtures.Xattr("new/cap2", "user.alpha", []byte("a")),
		fixtures.Xattr("new/cap2", "trusted.beta", []byte("b")),
		fixtures.Xattr("new/a", "user.dir", []byte("d")),
		// Sparse, empty, and a 512-byte file.
		fixtures.Sparse("new/sparse", 3<<20),
		fixtures.CreateFile("new/empty", nil, 0o644),
		fixtures.CreateFile("new/block", bytes.Repeat([]byte{'z'}, 512), 0o644),
		// Thousands of entries, and names that sort differently by
		// bytes and by locale.
		fixtures.CreateDir("new/many", 0o755),
		fixtures.Many("new/many", "f", 3000),
		fixtures.CreateDir("new/sort/a", 0o755),
		fixtures.CreateFile("new/sort/a/in", nil, 0o644),
		fixtures.CreateFile("new/sort/a-b", nil, 0o644),
		fixtures.CreateFile("new/sort/a.b", nil, 0o644),
		fixtures.CreateFile("new/sort/A", nil, 0o644),
		fixtures.CreateFile("new/sort/_", nil, 0o644),
		fixtures.CreateFile("new/sort/B", nil, 0o644),
		fixtures.CreateFile("new/sort/a_b", nil, 0o644),
	}
}

// container runs a container on image with a long sleep and returns its
// ID, removing it at cleanup.
func container(t *testing.T, d *oracle.Docker, image string) string {
	t.Helper()
	id := d.Run(t, "run", "-d", "--network", "none", image, "/bin/sleep", "3600")
	t.Cleanup(func() { d.Try("rm", "-f", id) })
	return id
}

func inspect(t *testing.T, d *oracle.Docker, id, format string) string {
	t.Helper()
	return d.Run(t, "inspect", "-f", format, id)
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func writeLayer(t *testing.T, src diff.Source, opts ...diff.Option) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	id, n, err := diff.Write(context.Background(), &buf, src, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("Write reported %d bytes, wrote %d", n, buf.Len())
	}
	return buf.Bytes(), id.String()
}

// compareTars fails with the first header that differs, decoded and raw.
func compareTars(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	g, w := tarIndex(got), tarIndex(want)
	for i := 0; i < len(g) || i < len(w); i++ {
		var gs, ws string
		if i < len(g) {
			gs = g[i]
		}
		if i < len(w) {
			ws = w[i]
		}
		if gs != ws {
			t.Fatalf("%s: layer differs (%d vs %d bytes) at entry %d:\n got  %s\n want %s", what, len(got), len(want), i, gs, ws)
		}
	}
	for off := 0; off < len(got) && off < len(want); off += 512 {
		end := min(off+512, len(got), len(want))
		if !bytes.Equal(got[off:end], want[off:end]) {
			t.Fatalf("%s: layer differs (%d vs %d bytes) in block at %d:\n got  %q\n want %q", what, len(got), len(want), off, got[off:end], want[off:end])
		}
	}
	t.Fatalf("%s: layer differs in length: %d vs %d bytes", what, len(got), len(want))
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
		out = append(out, fmt.Sprintf("%q type=%c mode=%o uid=%d gid=%d uname=%q gname=%q size=%d mtime=%d link=%q dev=%d/%d pax=%q fmt=%v",
			h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Uname, h.Gname, h.Size, h.ModTime.Unix(), h.Linkname, h.Devmajor, h.Devminor, h.PAXRecords, h.Format))
	}
}

// TestDockerCommitConformance commits a container with every kind of
// change through the real dockerd and compares the layer docker save
// returns with layercommit's diff of the container's upper dir, byte for
// byte; the same upper dir through moby/go-archive is the docker-24 oracle.
func TestDockerCommitConformance(t *testing.T) {
	d := oracle.NewDocker(t)
	c := commitThroughDocker(t, d)
	upper, want, wantID := c.upper, c.want, c.wantID
	got, gotID := writeLayer(t, diff.Overlay(upper), diff.WithCompat(compat.Docker2010))
	compareTars(t, "docker-20.10 vs docker commit", got, want)
	if !strings.Contains(wantID, gotID) {
		t.Errorf("diffID %s is not the last of docker's %s", gotID, wantID)
	}
	if sha(want) != gotID {
		t.Errorf("docker save layer has sha %s, our diffID %s", sha(want), gotID)
	}

	rc, err := goarchive.TarWithOptions(upper, &goarchive.TarOptions{WhiteoutFormat: goarchive.OverlayWhiteoutFormat})
	if err != nil {
		t.Fatal(err)
	}
	want24, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	got24, _ := writeLayer(t, diff.Overlay(upper), diff.WithCompat(compat.Docker24))
	compareTars(t, "docker-24 vs moby/go-archive", got24, want24)
	if len(got24) != len(got) {
		t.Errorf("the two profiles differ in length: %d vs %d", len(got24), len(got))
	}
	checkConformanceLayer(t, d, c, got, gotID, true)
}

// TestDocker29CommitConformance: the docker-24 profile's layer is the one
// a real Docker 29.7.1 (graphdriver mode, overlay2) commits, byte for byte.
func TestDocker29CommitConformance(t *testing.T) {
	d := oracle.NewDocker29(t)
	c := commitThroughDocker(t, d)
	got, gotID := writeLayer(t, diff.Overlay(c.upper), diff.WithCompat(compat.Docker24))
	compareTars(t, "docker-24 vs Docker 29 commit", got, c.want)
	if sha(c.want) != gotID || !strings.Contains(c.wantID, gotID) {
		t.Errorf("diffID %s: docker save layer has %s, the image lists %s", gotID, sha(c.want), c.wantID)
	}
	checkConformanceLayer(t, d, c, got, gotID, false)
}

// dockerCommit is a container changed through its merged view and committed
// by the real dockerd: its dirs, docker save's top layer and the image's
// diffIDs.
type dockerCommit struct {
	id, upper, merged, lowerDirs string
	want                         []byte
	wantID                       string
}

// commitThroughDocker makes the conformance change set in a container of
// d (on a lower image with its own changes) and commits it.
func commitThroughDocker(t *testing.T, d *oracle.Docker) dockerCommit {
	t.Helper()
	tag := fmt.Sprintf("layercommit-conf-lower:%d", time.Now().UnixNano())

	lowerID := container(t, d, d.Base)
	if err := fixtures.Apply(inspect(t, d, lowerID, "{{.GraphDriver.Data.MergedDir}}"), lowerTree()...); err != nil {
		t.Fatal(err)
	}
	d.Run(t, "commit", lowerID, tag)
	t.Cleanup(func() { d.Try("rmi", "-f", tag) })

	id := container(t, d, tag)
	merged := inspect(t, d, id, "{{.GraphDriver.Data.MergedDir}}")
	if err := fixtures.Apply(merged, changeTree()...); err != nil {
		t.Fatal(err)
	}
	upper := inspect(t, d, id, "{{.GraphDriver.Data.UpperDir}}")
	committed := tag + "-commit"
	d.Run(t, "commit", "-m", "conformance", id, committed)
	t.Cleanup(func() { d.Try("rmi", "-f", committed) })
	saved := d.SavedLayers(t, committed)
	return dockerCommit{id: id, upper: upper, merged: merged, lowerDirs: inspect(t, d, id, "{{.GraphDriver.Data.LowerDir}}"),
		want: saved[len(saved)-1], wantID: d.Run(t, "inspect", "-f", "{{json .RootFS.Layers}}", committed)}
}

// checkConformanceLayer checks our layer got of c beyond its bytes: the
// chainIDs name d's layerdb dirs, its modes carry file-type bits as the
// profile says, it applies onto the lowers to the merged
// view, and it holds the changes the test made.
func checkConformanceLayer(t *testing.T, d *oracle.Docker, c dockerCommit, got []byte, gotID string, typeBits bool) {
	t.Helper()
	wantID, merged := c.wantID, c.merged
	t.Logf("layer: %d bytes, %d entries, diffID %s", len(got), len(tarIndex(got)), gotID)
	// The chainIDs are the names of dockerd's layerdb directories.
	var diffIDs []v1.Hash
	if err := json.Unmarshal([]byte(wantID), &diffIDs); err != nil {
		t.Fatal(err)
	}
	for _, chain := range diff.ChainIDs(diffIDs) {
		if _, err := os.Stat(filepath.Join(d.Root, "image/overlay2/layerdb", chain.Algorithm, chain.Hex)); err != nil {
			t.Errorf("chainID %s: %v", chain, err)
		}
	}

	roundTrip(t, c.lowerDirs, merged, got)

	// Sanity: the layer really holds the changes the test made.
	index := strings.Join(tarIndex(got), "\n")
	for _, name := range []string{`"lower/.wh.del1"`, `"lower/opq/.wh..wh..opq"`, `"lower/.wh.deldir"`, `"new/sort/a/in"`, `"new/many/f02999"`, `"new/chr"`} {
		if !strings.Contains(index, name) {
			t.Errorf("layer lacks %s", name)
		}
	}
	entries := []string{`"new/suid" type=0 mode=104755`, `"new/sgid-sticky" type=0 mode=103750`, `"new/a/b/c/" type=5 mode=41777`, `"lower/opq/" type=5 mode=46755`, `"lower/opq/.wh..wh..opq" type=0 mode=755 `}
	if !typeBits {
		entries = []string{`"new/suid" type=0 mode=4755`, `"new/sgid-sticky" type=0 mode=3750`, `"new/a/b/c/" type=5 mode=1777`, `"lower/opq/" type=5 mode=6755`, `"lower/opq/.wh..wh..opq" type=0 mode=755 `}
	}
	for _, entry := range entries {
		if !strings.Contains(index, entry) {
			t.Errorf("layer lacks %s", entry)
		}
	}
	if strings.Contains(index, "new/sock") {
		t.Errorf("layer holds the socket")
	}
}

// roundTrip applies the layer onto a copy of the container's lower dirs
// and compares the result with the container's merged view.
func roundTrip(t *testing.T, lowerDirs, merged string, layer []byte) {
	t.Helper()
	roundTripOpts(t, lowerDirs, merged, layer, fixtures.CompareOptions{DirTimes: true})
}

// roundTripOpts is roundTrip comparing as o says.
func roundTripOpts(t *testing.T, lowerDirs, merged string, layer []byte, o fixtures.CompareOptions) {
	t.Helper()
	tmp := t.TempDir()
	mnt, tree := filepath.Join(tmp, "mnt"), filepath.Join(tmp, "tree")
	for _, dir := range []string{mnt, tree} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := overlay.Mount(mnt, overlay.Options{Lowers: strings.Split(lowerDirs, ":"), ReadOnly: true}); err != nil {
		t.Fatalf("mounting the lower dirs: %v", err)
	}
	err := fixtures.CopyTree(mnt, tree)
	if uerr := unix.Unmount(mnt, 0); uerr != nil {
		t.Fatal(uerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unpack.Apply(context.Background(), tree, bytes.NewReader(layer)); err != nil {
		t.Fatalf("applying the layer: %v", err)
	}
	diffs, err := fixtures.Compare(tree, merged, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) > 0 {
		t.Fatalf("round trip: %d differences, first: %s", len(diffs), strings.Join(diffs[:min(5, len(diffs))], "\n"))
	}
}
