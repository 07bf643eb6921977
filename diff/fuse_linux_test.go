package diff_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/internal/oracle"
	"github.com/layercommit/layercommit/internal/overlay"
	"github.com/layercommit/layercommit/unpack"
)

// fuseLowers are two overlay-form lowers (top first): the bottom has
// what the changes touch, the top deletes "hidden" and makes "op" opaque.
func fuseLowers(t *testing.T, dir string) []string {
	t.Helper()
	top, bottom := filepath.Join(dir, "top"), filepath.Join(dir, "bottom")
	for _, d := range []string{top, bottom} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := fixtures.Apply(bottom,
		fixtures.CreateDir("dir/sub", 0o755), fixtures.CreateFile("dir/sub/f", []byte("f\n"), 0o644),
		fixtures.CreateFile("dir/g", []byte("g\n"), 0o644), fixtures.CreateFile("file", []byte("file\n"), 0o644),
		fixtures.CreateFile("two", []byte("2\n"), 0o644), fixtures.CreateFile("mode", []byte("m\n"), 0o644),
		fixtures.CreateFile("asdir", []byte("a file\n"), 0o644), fixtures.CreateDir("asfile", 0o755),
		fixtures.CreateFile("asfile/x", []byte("x\n"), 0o644), fixtures.CreateDir("hidden", 0o755),
		fixtures.CreateFile("hidden/h", nil, 0o644), fixtures.CreateDir("op/old", 0o755),
		fixtures.CreateFile("tool", []byte("#!/bin/sh\n"), 0o755),
	); err != nil {
		t.Fatal(err)
	}
	if err := fixtures.Apply(top, fixtures.Whiteout("hidden"), fixtures.CreateDir("op", 0o755), fixtures.Opaque("op"),
		fixtures.CreateFile("op/new", []byte("n\n"), 0o644)); err != nil {
		t.Fatal(err)
	}
	return []string{top, bottom}
}

// fuseCases are shell scripts run in the merged root $M.
// In "rename" the bytes differ in one way only: the kernel's rename
// leaves a whiteout of its own while its unlinks share one inode, and
// fuse-overlayfs's whiteouts do not say which call made them, so the tar
// links them differently; the file systems are the same.
var fuseCases = []struct {
	name, script string
	linksDiffer  bool
}{
	{"delete", `rm file`, false},
	{"two deletes (shared whiteout)", `rm file two`, false},
	{"dir replaced (opaque)", `rm -r dir; mkdir dir; echo n > dir/n`, false},
	{"new dirs", `mkdir -p new/a/b; echo x > new/a/b/x; mkdir dir/sub/deeper`, false},
	{"new dir and a delete inside", `mkdir nd; echo x > nd/x; rm nd/x`, false},
	{"create and delete", `echo t > tmp; rm tmp`, false},
	{"file replaced by a dir", `rm asdir; mkdir asdir; echo i > asdir/i`, false},
	{"dir replaced by a file", `rm -r asfile; echo f > asfile`, false},
	{"in an opaque lower dir", `rm op/new; mkdir op/old2; rmdir op/old 2>/dev/null || true`, false},
	{"name hidden below", `mkdir hidden; echo h > hidden/again`, false},
	{"chown chmod", `chown 1500:1501 mode; chmod 4711 tool; chmod 700 dir/sub`, false},
	{"hard and symbolic links", `ln dir/g glink; ln file flink; rm file; ln -s dir/g sym; mkdir l; ln tool l/tool2`, false},
	{"rename", `mv dir/g dir/g2; mv two dir/two`, true},
	{"xattrs", `echo v > xa; setfattr -n user.k -v v xa`, false},
}

// TestFuseUpper: the same changes made through the kernel's overlay and
// through fuse-overlayfs (as root) over the same lowers give the same
// layer byte for byte (in "rename", the same file system: see
// fuseCases) when fuse-overlayfs's upper dir is read WithFuse
// (its .wh.NAME and 0700 whiteouts, its opaque marks on every new dir,
// its .wh..wh..opq files); read as a kernel upper they differ.
func TestFuseUpper(t *testing.T) {
	oracle.Root(t)
	oracle.Tool(t, overlay.FuseProgram)
	oracle.Tool(t, "setfattr")
	lowers := fuseLowers(t, t.TempDir())
	all, err := diff.ParseXattrs("all")
	if err != nil {
		t.Fatal(err)
	}
	opts := []diff.Option{diff.WithMtimeClamp(1), diff.WithXattrs(all)}
	for _, tc := range fuseCases {
		t.Run(tc.name, func(t *testing.T) {
			layers := map[bool][]byte{}
			var plain []byte
			for _, fuse := range []bool{false, true} {
				dir := t.TempDir()
				upper, work, merged := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
				for _, d := range []string{upper, work, merged} {
					if err := os.Mkdir(d, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				if err := overlay.Mount(merged, overlay.Options{Lowers: lowers, Upper: upper, Work: work, Fuse: fuse}); err != nil {
					t.Fatal(err)
				}
				cmd := exec.Command("sh", "-ec", "cd \"$M\"; "+tc.script)
				cmd.Env = append(os.Environ(), "M="+merged)
				out, err := cmd.CombinedOutput()
				if uerr := unix.Unmount(merged, 0); uerr != nil {
					t.Fatalf("unmounting: %v", uerr)
				}
				if err != nil {
					t.Fatalf("fuse %v: %v: %s", fuse, err, out)
				}
				var buf bytes.Buffer
				src := diff.Overlay(upper, diff.WithLowers(lowers...))
				if fuse {
					src = diff.Overlay(upper, diff.WithLowers(lowers...), diff.WithFuse())
				}
				if _, _, err := diff.Write(context.Background(), &buf, src, opts...); err != nil {
					t.Fatal(err)
				}
				layers[fuse] = buf.Bytes()
				if fuse {
					var p bytes.Buffer
					if _, _, err := diff.Write(context.Background(), &p, diff.Overlay(upper), opts...); err != nil {
						t.Fatal(err)
					}
					plain = p.Bytes()
				}
			}
			flat := filepath.Join(t.TempDir(), "flat")
			if err := os.Mkdir(flat, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := overlay.Mount(flat, overlay.Options{Lowers: append(lowers, t.TempDir()), ReadOnly: true}); err != nil {
				t.Fatal(err)
			}
			trees := map[bool]string{}
			for fuse, layer := range layers {
				trees[fuse] = filepath.Join(t.TempDir(), "tree")
				if err := os.Mkdir(trees[fuse], 0o755); err != nil {
					t.Fatal(err)
				}
				if err := fixtures.CopyTree(flat, trees[fuse]); err != nil {
					t.Fatal(err)
				}
				if _, err := unpack.Apply(context.Background(), trees[fuse], bytes.NewReader(layer)); err != nil {
					t.Fatal(err)
				}
			}
			if err := unix.Unmount(flat, 0); err != nil {
				t.Fatal(err)
			}
			if d, err := fixtures.Compare(trees[true], trees[false], fixtures.CompareOptions{}); err != nil || len(d) > 0 {
				t.Errorf("fuse-overlayfs's layer applied differs from the kernel's: %v %v", err, d)
			}
			if tc.linksDiffer {
				return
			}
			if !bytes.Equal(layers[true], layers[false]) {
				t.Errorf("fuse-overlayfs's layer\n%s\nthe kernel's\n%s", fuseListing(t, layers[true]), fuseListing(t, layers[false]))
			}
			if tc.name == "new dirs" && bytes.Equal(plain, layers[false]) {
				t.Errorf("fuse-overlayfs's upper read as a kernel upper gives the kernel's layer: the case does not tell")
			}
		})
	}
}

func fuseListing(t *testing.T, layer []byte) string {
	var out []string
	for _, e := range readLayer(t, layer) {
		out = append(out, fmt.Sprintf("%s %c %s %d:%d %o %d %v", e.h.Name, e.h.Typeflag, e.h.Linkname, e.h.Uid, e.h.Gid, e.h.Mode, e.h.ModTime.Unix(), e.h.PAXRecords))
	}
	return strings.Join(out, "\n")
}
