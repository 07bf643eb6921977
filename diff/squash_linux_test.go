package diff_test

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/internal/oracle"
	"github.com/layercommit/layercommit/unpack"
)

// layerStack builds three overlay-form dirs through real overlay mounts:
// l1 (plain), l2 (changes over l1) and upper (changes over l2 and l1),
// and returns them top first.
func layerStack(t *testing.T) []string {
	t.Helper()
	oracle.Root(t)
	tmp := t.TempDir()
	l1 := filepath.Join(tmp, "l1")
	must(t, os.Mkdir(l1, 0o755))
	must(t, fixtures.Apply(l1,
		fixtures.CreateFile("a", []byte("a from l1\n"), 0o644),
		fixtures.CreateDir("d", 0o755),
		fixtures.CreateFile("d/x", []byte("x1\n"), 0o644),
		fixtures.CreateFile("d/y", []byte("y1\n"), 0o600),
		fixtures.CreateFile("h1", []byte("linked\n"), 0o644),
		fixtures.Link("h1", "h2"),
		fixtures.CreateDir("o/deep", 0o755),
		fixtures.CreateFile("o/p", []byte("p\n"), 0o644),
		fixtures.CreateFile("o/deep/q", []byte("q\n"), 0o644),
		fixtures.CreateFile("del", []byte("deleted later\n"), 0o644),
		fixtures.Symlink("d/x", "sym")))
	l2 := filepath.Join(tmp, "l2")
	over := func(lowers []string, upper string, changes ...fixtures.Applier) {
		ov, err := fixtures.MountOverlay(lowers, upper, upper+".work", upper+".merged")
		if err != nil {
			oracle.Missing(t, "overlayfs mount: %v", err)
		}
		err = fixtures.Apply(ov.Merged, changes...)
		must(t, ov.Unmount())
		must(t, err)
	}
	over([]string{l1}, l2,
		fixtures.Remove("del"),
		fixtures.Remove("o"),
		fixtures.CreateDir("o", 0o750),
		fixtures.CreateFile("o/new", []byte("new in l2\n"), 0o644),
		fixtures.CreateFile("d/x", []byte("x2\n"), 0o644),
		fixtures.CreateFile("l2file", []byte("two\n"), 0o644),
		fixtures.Link("l2file", "l2link"))
	upper := filepath.Join(tmp, "upper")
	over([]string{l2, l1}, upper,
		fixtures.Remove("d/y"),
		fixtures.Remove("l2link"),
		fixtures.CreateFile("up", []byte("up\n"), 0o644),
		fixtures.Link("up", "d/uplink"),
		fixtures.CreateFile("del", []byte("back again\n"), 0o644),
		fixtures.Chmod("a", 0o600))
	return []string{upper, l2, l1}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestSquashMatchesKernelMerge: the squashed layer of a stack of layer
// dirs, applied to an empty dir, is the tree the kernel's overlay of the
// same dirs shows; it holds no whiteout or opaque marker, and the link
// sets of each dir stay link sets.
func TestSquashMatchesKernelMerge(t *testing.T) {
	dirs := layerStack(t)
	tmp := t.TempDir()
	merged := filepath.Join(tmp, "merged")
	must(t, os.Mkdir(merged, 0o755))
	ov, err := fixtures.MountOverlay(dirs, filepath.Join(tmp, "u"), filepath.Join(tmp, "w"), merged)
	if err != nil {
		oracle.Missing(t, "overlayfs mount: %v", err)
	}
	want := filepath.Join(tmp, "want")
	must(t, os.Mkdir(want, 0o755))
	err = fixtures.CopyTree(merged, want)
	must(t, ov.Unmount())
	must(t, err)

	layer, _ := writeLayer(t, diff.Squash(dirs))
	got := filepath.Join(tmp, "got")
	must(t, os.Mkdir(got, 0o755))
	if _, err := unpack.Apply(context.Background(), got, bytes.NewReader(layer)); err != nil {
		t.Fatalf("applying the squashed layer: %v", err)
	}
	diffs, err := fixtures.Compare(got, want, fixtures.CompareOptions{})
	must(t, err)
	if len(diffs) > 0 {
		t.Fatalf("squashed layer differs from the kernel's merge:\n%s", strings.Join(diffs, "\n"))
	}
	es := readLayer(t, layer)
	for _, e := range es {
		if strings.Contains(e.h.Name, diff.WhiteoutPrefix) {
			t.Errorf("squashed layer has %s", e.h.Name)
		}
	}
	links := map[string]string{}
	for _, e := range es {
		if e.h.Typeflag == tar.TypeLink {
			links[e.h.Name] = e.h.Linkname
		}
	}
	// h1/h2 (one inode of l1) and up/d/uplink (of the upper) stay links;
	// l2file lost its partner to a whiteout and is a plain file.
	wantLinks := map[string]string{"h2": "h1", "up": "d/uplink"}
	if len(links) != len(wantLinks) || links["h2"] != "h1" || links["up"] != "d/uplink" {
		t.Fatalf("hard links %v, want %v", links, wantLinks)
	}
	if e := find(es, "l2file"); e == nil || e.h.Typeflag != tar.TypeReg || e.data != "two\n" {
		t.Fatalf("l2file: %+v", e)
	}
}

// TestSquashBadDir: a missing dir in the stack is an error, not an empty
// layer.
func TestSquashBadDir(t *testing.T) {
	var buf bytes.Buffer
	_, _, err := diff.Write(context.Background(), &buf, diff.Squash([]string{t.TempDir(), filepath.Join(t.TempDir(), "gone")}))
	if err == nil || !strings.Contains(err.Error(), "gone") {
		t.Fatalf("error %v, want one naming the missing dir", err)
	}
}

// TestSquashLinksAcrossFileSystems: an upper dir and a layer dir on two
// file systems whose files have the same inode numbers (two fresh
// tmpfs mounts number inodes alike): each dir's link set stays its own,
// never merged by inode number alone.
func TestSquashLinksAcrossFileSystems(t *testing.T) {
	oracle.Root(t)
	var dirs []string
	for _, names := range [][2]string{{"f", "g"}, {"p", "q"}} {
		d := t.TempDir()
		if err := unix.Mount("tmpfs", d, "tmpfs", 0, "size=1m"); err != nil {
			oracle.Missing(t, "cannot mount a tmpfs: %v", err)
		}
		t.Cleanup(func() { unix.Unmount(d, unix.MNT_DETACH) })
		must(t, fixtures.Apply(d,
			fixtures.CreateFile(names[0], []byte("data of "+names[0]+"\n"), 0o644),
			fixtures.Link(names[0], names[1])))
		dirs = append(dirs, d)
	}
	var a, b unix.Stat_t
	must(t, unix.Lstat(filepath.Join(dirs[0], "f"), &a))
	must(t, unix.Lstat(filepath.Join(dirs[1], "p"), &b))
	if a.Ino != b.Ino {
		t.Skipf("this kernel numbers tmpfs inodes globally (%d, %d): no collision to test", a.Ino, b.Ino)
	}
	layer, _ := writeLayer(t, diff.Squash(dirs))
	es := readLayer(t, layer)
	for _, want := range []struct{ name, link, data string }{
		{"f", "", "data of f\n"}, {"g", "f", ""}, {"p", "", "data of p\n"}, {"q", "p", ""},
	} {
		e := find(es, want.name)
		if e == nil || e.h.Linkname != want.link || e.data != want.data {
			t.Fatalf("%s: %+v, want link %q data %q", want.name, e, want.link, want.data)
		}
	}
}
