package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/internal/oracle"
)

// breakout is one hostile or tricky layer from HOSTILE.md section 5.1.
// The oracle, as in go-archive's testBreakout: a victim directory and a
// prefix sibling of the root ("root-evil") sit next to the root and must
// come out of every case exactly as they went in.
type breakout struct {
	row   string
	name  string
	lower func(victim string) []fixtures.Applier // the tree before the layer
	layer func(victim string) []byte
	opts  []Option
	err   error // nil: the layer applies
	check func(t *testing.T, root, victim string)
}

func TestBreakouts(t *testing.T) {
	oracle.Root(t)
	for _, mode := range []struct {
		name string
		opts []Option
	}{{"openat2", nil}, {"walk", []Option{withoutOpenat2()}}} {
		t.Run(mode.name, func(t *testing.T) {
			for _, c := range breakouts {
				t.Run(c.row+"/"+c.name, func(t *testing.T) {
					t.Parallel()
					runBreakout(t, c, mode.opts)
				})
			}
		})
	}
}

func runBreakout(t *testing.T, c breakout, modeOpts []Option) {
	tmp := t.TempDir()
	root, victim, sibling := filepath.Join(tmp, "root"), filepath.Join(tmp, "victim"), filepath.Join(tmp, "root-evil")
	for _, d := range []string{root, victim, sibling} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Unix(1000000000, 0)
	if err := fixtures.Apply(victim,
		fixtures.CreateFile("hello", []byte("hello"), 0o644),
		fixtures.CreateDir("sub", 0o755),
		fixtures.CreateFile("sub/file", []byte("sub"), 0o600),
		fixtures.Chtimes("hello", old, old),
		fixtures.Chtimes("sub/file", old, old),
	); err != nil {
		t.Fatal(err)
	}
	if err := fixtures.Apply(sibling, fixtures.CreateFile("secret", []byte("secret"), 0o600), fixtures.Chtimes("secret", old, old)); err != nil {
		t.Fatal(err)
	}
	if c.lower != nil {
		if err := fixtures.Apply(root, c.lower(victim)...); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshot(t, victim) + "\n" + snapshot(t, sibling)
	_, err := Apply(context.Background(), root, bytes.NewReader(c.layer(victim)), append(append([]Option(nil), modeOpts...), c.opts...)...)
	if after := snapshot(t, victim) + "\n" + snapshot(t, sibling); after != before {
		t.Errorf("outside the root changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if err != nil && strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
	switch {
	case c.err == nil && err != nil:
		t.Fatalf("Apply: %v", err)
	case c.err != nil && !errors.Is(err, c.err):
		t.Fatalf("Apply error = %v, want %v", err, c.err)
	}
	// No file in the root may share an inode with one outside it.
	outside := map[uint64]bool{}
	for _, d := range []string{victim, sibling} {
		filepath.Walk(d, func(p string, fi os.FileInfo, err error) error {
			if err == nil {
				outside[fi.Sys().(*syscall.Stat_t).Ino] = true
			}
			return nil
		})
	}
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && outside[fi.Sys().(*syscall.Stat_t).Ino] {
			t.Errorf("%s is a hard link to a file outside the root", p)
		}
		return nil
	})
	if c.check != nil {
		c.check(t, root, victim)
	}
}

func layer(es ...ent) func(string) []byte {
	return func(string) []byte { return tarOf(es...) }
}

func apps(as ...fixtures.Applier) func(string) []fixtures.Applier {
	return func(string) []fixtures.Applier { return as }
}

var breakouts = []breakout{
	{row: "T1", name: "dotdot name", layer: layer(file("../victim/x", "pwned")), err: ErrUnsafePath},
	{row: "T2", name: "slash dotdot name", layer: layer(file("/../victim/x", "pwned")), err: ErrUnsafePath},
	{row: "T3", name: "bare dotdot", layer: layer(dir("..", 0o777)), err: ErrUnsafePath},
	{row: "T3", name: "dotdot dotdot", layer: layer(dir("../..", 0o777)), err: ErrUnsafePath},
	{row: "T3", name: "dotdot file", layer: layer(file("../pwned", "x")), err: ErrUnsafePath},
	{row: "T4", name: "absolute name", layer: layer(file("/etc/passwd", "root::0:0")), check: func(t *testing.T, root, _ string) {
		if got := mustRead(t, root, "etc/passwd"); got != "root::0:0" {
			t.Errorf("etc/passwd = %q", got)
		}
	}},
	{row: "T5", name: "dot", layer: layer(dir(".", 0o711)), check: rootMode(0o711)},
	{row: "T5", name: "dot slash", layer: layer(dir("./", 0o750)), check: rootMode(0o750)},
	{row: "T5", name: "slash", layer: layer(dir("/", 0o701)), check: rootMode(0o701)},
	{row: "T6", name: "root symlink", layer: func(v string) []byte { return tarOf(symlink(".", v), file("hello", "pwned")) }, err: ErrUnsafePath},
	{row: "T6", name: "root file", layer: layer(file("/.", "x")), err: ErrUnsafePath},
	{row: "T6", name: "root hardlink", lower: apps(fixtures.CreateFile("f", nil, 0o644)), layer: layer(hardlink("./", "f")), err: ErrUnsafePath},
	{row: "T7", name: "dotdot after symlink is lexical", lower: func(v string) []fixtures.Applier { return []fixtures.Applier{fixtures.Symlink(v, "a")} },
		layer: layer(file("a/../b", "b")), check: func(t *testing.T, root, _ string) {
			if got := mustRead(t, root, "b"); got != "b" {
				t.Errorf("b = %q", got)
			}
		}},
	{row: "T8", name: "NUL in PAX path", layer: func(string) []byte {
		recs := paxRecords("path", "a\x00/../../victim/x")
		return rawTar(rawBlock("PaxHeaders/f", tar.TypeXHeader, int64(len(recs)), nil), recs, rawBlock("f", tar.TypeReg, 0, nil))
	}, err: tar.ErrHeader},
	{row: "T8", name: "invalid PAX record", layer: func(string) []byte {
		recs := []byte("5 path=x\n")
		return rawTar(rawBlock("PaxHeaders/f", tar.TypeXHeader, int64(len(recs)), nil), recs, rawBlock("f", tar.TypeReg, 0, nil))
	}, err: tar.ErrHeader},
	{row: "T9", name: "absolute symlink parent", layer: func(v string) []byte {
		return tarOf(symlink("l", v), file("l/hello", "pwned"))
	}, check: func(t *testing.T, root, v string) {
		if got := mustRead(t, root, filepath.Join(v, "hello")); got != "pwned" {
			t.Errorf("file through the absolute symlink = %q, want it at <root>%s/hello", got, v)
		}
	}},
	{row: "T10", name: "relative symlink up and out", layer: layer(dir("dir/", 0o755), symlink("dir/loophole", "../../victim"), file("dir/loophole/newdir/newfile", "x")),
		check: func(t *testing.T, root, _ string) {
			if got := mustRead(t, root, "victim/newdir/newfile"); got != "x" {
				t.Errorf("confined file = %q", got)
			}
		}},
	{row: "T11", name: "two hop chain", layer: layer(dir("inner/", 0o755), symlink("inner/go_up", ".."), symlink("inner/go_up/escape", "../victim"), file("inner/go_up/escape/newfile", "x")),
		check: func(t *testing.T, root, _ string) {
			if got := mustRead(t, root, "victim/newfile"); got != "x" {
				t.Errorf("confined file = %q", got)
			}
		}},
	{row: "T12", name: "symlink to prefix sibling", layer: layer(symlink("s", "../root-evil"), file("s/secret", "pwned")), check: func(t *testing.T, root, _ string) {
		if got := mustRead(t, root, "root-evil/secret"); got != "pwned" {
			t.Errorf("confined file = %q", got)
		}
	}},
	{row: "T12", name: "hardlink to prefix sibling", layer: layer(hardlink("h", "../root-evil/secret")), err: ErrUnsafePath},
	{row: "T13", name: "relative escape then absolute symlink", lower: apps(fixtures.Symlink("..", "escape"), fixtures.Symlink("/target", "absolute")),
		layer: layer(file("escape/absolute/file", "x")), check: func(t *testing.T, root, _ string) {
			// Chroot semantics: ".." of the root is the root and
			// "/target" is <root>/target (go-archive errors here).
			if got := mustRead(t, root, "target/file"); got != "x" {
				t.Errorf("target/file = %q", got)
			}
		}},
	{row: "T14", name: "hardlink dotdot", layer: layer(hardlink("x", "../victim/hello")), err: ErrUnsafePath},
	{row: "T14", name: "hardlink slash dotdot", layer: layer(hardlink("x", "/../victim/hello")), err: ErrUnsafePath},
	{row: "T14", name: "hardlink through absolute symlink", layer: func(v string) []byte {
		return tarOf(symlink("l", v), hardlink("x", "l/hello"))
	}, err: unix.ENOENT},
	{row: "T15", name: "absolute hardlink (kaniko)", lower: apps(fixtures.CreateDir("usr/bin", 0o755), fixtures.CreateFile("usr/bin/perlbug", []byte("perl"), 0o755)),
		layer: layer(hardlink("usr/bin/perlthanks", "/usr/bin/perlbug")), check: func(t *testing.T, root, _ string) {
			if a, b := lstatT(t, root, "usr/bin/perlbug"), lstatT(t, root, "usr/bin/perlthanks"); a.Ino != b.Ino {
				t.Errorf("not the same inode")
			}
		}},
	{row: "T16", name: "hardlink to symlink with setuid mode", layer: func(v string) []byte {
		h := hardlink("h", "s")
		h.h.Mode = 0o4777
		return tarOf(symlink("s", filepath.Join(v, "hello")), h)
	}, check: func(t *testing.T, root, _ string) {
		if st := lstatT(t, root, "h"); st.Mode&unix.S_IFMT != unix.S_IFLNK {
			t.Errorf("h is %o, want a symlink", st.Mode)
		}
	}},
	{row: "T17", name: "hardlink target never appears", layer: layer(hardlink("h", "missing")), err: unix.ENOENT},
	{row: "T17", name: "hardlink target appears later", layer: layer(hardlink("h", "later"), file("later", "x")), err: unix.ENOENT},
	{row: "T18", name: "hardlink to directory", layer: layer(dir("d/", 0o755), hardlink("h", "d")), err: unix.EPERM},
	{row: "T19", name: "hardlink to whiteout name", layer: layer(hardlink("h", ".wh.x")), err: ErrInvalidWhiteout},
	{row: "T20", name: "hardlink to lower file in an empty layer dir", layer: layer(hardlink("h", "lowerfile")), err: unix.ENOENT},
	{row: "T20", name: "hardlink to lower file in the merged tree", lower: apps(fixtures.CreateFile("lowerfile", []byte("l"), 0o644)), layer: layer(hardlink("h", "lowerfile")),
		check: func(t *testing.T, root, _ string) {
			if lstatT(t, root, "h").Ino != lstatT(t, root, "lowerfile").Ino {
				t.Errorf("not linked")
			}
		}},
	{row: "T21", name: "symlink replaces directory", lower: apps(fixtures.CreateDir("d/sub", 0o755), fixtures.CreateFile("d/sub/old", nil, 0o644)),
		layer: layer(symlink("d", "/elsewhere"), file("d/x", "x")), check: func(t *testing.T, root, _ string) {
			if got := mustRead(t, root, "elsewhere/x"); got != "x" {
				t.Errorf("elsewhere/x = %q", got)
			}
			absent(t, root, "elsewhere/sub")
		}},
	{row: "T22", name: "directory replaces symlink to directory", lower: func(v string) []fixtures.Applier { return []fixtures.Applier{fixtures.Symlink(v, "d")} },
		layer: layer(dir("d/", 0o755), file("d/hello", "x")), check: func(t *testing.T, root, _ string) {
			if st := lstatT(t, root, "d"); st.Mode&unix.S_IFMT != unix.S_IFDIR {
				t.Errorf("d is %o, want a directory", st.Mode)
			}
		}},
	// T23: moby's choice (ENOTDIR), not umoci's (replace the file).
	{row: "T23", name: "file as parent", layer: layer(file("f", "x"), file("f/x", "y")), err: unix.ENOTDIR},
	{row: "T24", name: "duplicate ./a and a", layer: layer(file("./a", "1"), file("a", "2")), err: ErrDuplicate},
	{row: "T24", name: "duplicate dir", layer: layer(dir("d/", 0o755), dir("d", 0o700)), err: ErrDuplicate},
	{row: "T25", name: ".wh.", layer: layer(file(".wh.", "")), err: ErrInvalidWhiteout},
	{row: "T25", name: ".wh..", layer: layer(file("d/.wh..", "")), err: ErrInvalidWhiteout},
	{row: "T25", name: ".wh...", layer: layer(file(".wh...", "")), err: ErrInvalidWhiteout},
	{row: "T25", name: ".wh... overlay", layer: layer(file(".wh...", "")), opts: []Option{WithOverlayForm()}, err: ErrInvalidWhiteout},
	{row: "T26", name: "opaque after children", lower: apps(fixtures.CreateDir("d", 0o755), fixtures.CreateFile("d/old", nil, 0o644)),
		layer: layer(dir("d/", 0o755), file("d/new", "n"), file("d/.wh..wh..opq", "")), check: func(t *testing.T, root, _ string) {
			absent(t, root, "d/old")
			absent(t, root, "d/.wh..wh..opq")
			if got := mustRead(t, root, "d/new"); got != "n" {
				t.Errorf("d/new = %q", got)
			}
		}},
	{row: "T26", name: "opaque after children overlay form", layer: layer(dir("d/", 0o755), file("d/new", "n"), file("d/.wh..wh..opq", "")), opts: []Option{WithOverlayForm()},
		check: func(t *testing.T, root, _ string) {
			buf := make([]byte, 8)
			n, err := unix.Lgetxattr(filepath.Join(root, "d"), "trusted.overlay.opaque", buf)
			if err != nil || string(buf[:n]) != "y" {
				t.Errorf("opaque xattr = %q, %v", buf[:n], err)
			}
			mustRead(t, root, "d/new")
		}},
	{row: "T27", name: "whiteout then same name", lower: apps(fixtures.CreateFile("a", []byte("lower"), 0o644)), layer: layer(file(".wh.a", ""), file("a", "new")), check: content("a", "new")},
	{row: "T27", name: "same name then whiteout", lower: apps(fixtures.CreateFile("a", []byte("lower"), 0o644)), layer: layer(file("a", "new"), file(".wh.a", "")), check: content("a", "new")},
	{row: "T27", name: "same name then whiteout overlay form", layer: layer(file("a", "new"), file(".wh.a", "")), opts: []Option{WithOverlayForm()}, check: content("a", "new")},
	{row: "T28", name: "whiteout of symlink to directory", lower: apps(fixtures.CreateDir("real", 0o755), fixtures.CreateFile("real/keep", nil, 0o644), fixtures.Symlink("real", "link")),
		layer: layer(file(".wh.link", "")), check: func(t *testing.T, root, _ string) {
			absent(t, root, "link")
			mustRead(t, root, "real/keep")
		}},
	{row: "T29", name: "whiteout below absolute symlink", lower: apps(fixtures.CreateDir("etc", 0o755), fixtures.CreateFile("etc/x", nil, 0o644), fixtures.Symlink("/etc", "link")),
		layer: layer(file("link/.wh.x", "")), check: func(t *testing.T, root, _ string) { absent(t, root, "etc/x") }},
	{row: "T29", name: "whiteout below symlink to victim", lower: func(v string) []fixtures.Applier { return []fixtures.Applier{fixtures.Symlink(v, "link")} },
		layer: layer(file("link/.wh.hello", ""))},
	{row: "T30", name: "whiteout under dead symlink or of missing target", lower: apps(fixtures.Symlink("/nonexistent", "dead")),
		layer: layer(file("dead/.wh.x", ""), file(".wh.missing", ""), file("nodir/.wh.x", "")), check: func(t *testing.T, root, _ string) {
			absent(t, root, "nonexistent")
			absent(t, root, "nodir")
		}},
	{row: "T31", name: "whiteout-named directory", layer: layer(file(".wh.etc/somefile", "x")), err: ErrInvalidWhiteout},
	{row: "T32", name: "whiteouts of other types", lower: apps(fixtures.CreateFile("a", nil, 0o644), fixtures.CreateFile("b", nil, 0o644), fixtures.CreateFile("c", nil, 0o644)),
		layer: func(v string) []byte {
			return tarOf(symlink(".wh.a", v), dir(".wh.b/", 0o755), node(".wh.c", tar.TypeChar, 1, 3))
		}, check: func(t *testing.T, root, _ string) {
			for _, n := range []string{"a", "b", "c", ".wh.a", ".wh.b", ".wh.c"} {
				absent(t, root, n)
			}
		}},
	{row: "T33", name: "opaque root", lower: apps(fixtures.CreateFile("a", nil, 0o644), fixtures.CreateDir("b", 0o755)),
		layer: layer(file(".wh..wh..opq", ""), file("c", "c")), check: func(t *testing.T, root, _ string) {
			absent(t, root, "a")
			absent(t, root, "b")
			mustRead(t, root, "c")
		}},
	{row: "T34", name: "aufs metadata skipped", layer: layer(dir(".wh..wh.plnk/", 0o700), file(".wh..wh.plnk/123.456", "x"), file(".wh..wh.aufs", "")),
		check: func(t *testing.T, root, _ string) {
			absent(t, root, ".wh..wh.plnk")
			absent(t, root, ".wh..wh.aufs")
		}},
	{row: "T34", name: "aufs hardlink", layer: layer(file(".wh..wh.plnk/123.456", "x"), hardlink("f", ".wh..wh.plnk/123.456")), err: ErrUnsupportedType},
	{row: "T35", name: "char 0/0 as a plain entry", layer: layer(node("dev0", tar.TypeChar, 0, 0)), err: ErrInvalidDevice},
	{row: "T36", name: "block device", layer: layer(node("sda", tar.TypeBlock, 8, 0), node("null", tar.TypeChar, 1, 3)), check: func(t *testing.T, root, _ string) {
		st := lstatT(t, root, "sda")
		if st.Mode&unix.S_IFMT != unix.S_IFBLK || unix.Major(st.Rdev) != 8 || unix.Minor(st.Rdev) != 0 {
			t.Errorf("sda: mode %o rdev %d:%d", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
	}},
	{row: "T37", name: "major out of range", layer: layer(gnu(node("d", tar.TypeChar, 4096, 0))), err: ErrInvalidDevice},
	{row: "T37", name: "minor out of range", layer: layer(gnu(node("d", tar.TypeBlock, 1, 1<<20))), err: ErrInvalidDevice},
	{row: "T37", name: "major above uint32", layer: layer(gnu(node("d", tar.TypeChar, 1<<32+1, 3))), err: ErrInvalidDevice},
	{row: "T37", name: "negative major", layer: func(string) []byte {
		return rawTar(rawBlock("d", tar.TypeChar, 0, func(b []byte) {
			b[329] = 0xff // GNU base-256, all ones: -1
			for i := 330; i < 337; i++ {
				b[i] = 0xff
			}
		}))
	}, err: ErrInvalidDevice},
	{row: "T38", name: "fifo", layer: layer(node("p", tar.TypeFifo, 0, 0)), check: func(t *testing.T, root, _ string) {
		if st := lstatT(t, root, "p"); st.Mode&unix.S_IFMT != unix.S_IFIFO {
			t.Errorf("p is %o", st.Mode)
		}
	}},
	{row: "T39", name: "contiguous file", layer: rawLayer(rawBlock("c", tar.TypeCont, 0, nil)), err: ErrUnsupportedType},
	{row: "T39", name: "GNU volume header", layer: rawLayer(rawBlock("v", 'V', 0, nil)), err: ErrUnsupportedType},
	{row: "T39", name: "multi-volume", layer: rawLayer(rawBlock("m", 'M', 0, nil)), err: ErrUnsupportedType},
	{row: "T39", name: "vendor letter", layer: rawLayer(rawBlock("z", 'Z', 0, nil)), err: ErrUnsupportedType},
	{row: "T39", name: "NUL type is a regular file", layer: func(string) []byte {
		return rawTar(rawBlock("r", 0, 2, nil), []byte("ok"))
	}, check: content("r", "ok")},
	{row: "T40", name: "global header makes no parents", layer: layer(ent{h: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "a/b/pax_global_header", PAXRecords: map[string]string{"comment": "x"}}}, file("f", "f")),
		check: func(t *testing.T, root, _ string) { absent(t, root, "a") }},
	{row: "T41", name: "trusted xattrs never applied", layer: layer(
		xattrs(dir("d/", 0o755), "trusted.overlay.redirect", "/victim", "trusted.overlay.opaque", "y", "user.keep", "1"),
		xattrs(file("f", "x"), "trusted.overlay.metacopy", "", "trusted.foo", "bar", "user.keep", "2"),
	), check: func(t *testing.T, root, _ string) {
		for _, n := range []string{"d", "f"} {
			for _, k := range []string{"trusted.overlay.redirect", "trusted.overlay.opaque", "trusted.overlay.metacopy", "trusted.foo"} {
				if _, err := unix.Lgetxattr(filepath.Join(root, n), k, nil); err != unix.ENODATA {
					t.Errorf("%s has %s (%v)", n, k, err)
				}
			}
			if _, err := unix.Lgetxattr(filepath.Join(root, n), "user.keep", nil); err != nil {
				t.Errorf("%s: user.keep not applied: %v", n, err)
			}
		}
	}},
	{row: "T42", name: "capability v3", layer: layer(xattrs(file("ping", "x"), "security.capability", capV3)), check: func(t *testing.T, root, _ string) {
		if n, err := unix.Lgetxattr(filepath.Join(root, "ping"), "security.capability", make([]byte, 64)); err != nil || n == 0 {
			t.Errorf("security.capability not applied: %d, %v", n, err)
		}
	}},
	{row: "T43", name: "PAX record over 1 MiB", layer: func(string) []byte {
		recs := paxRecords("SCHILY.xattr.user.big", strings.Repeat("x", 1<<20+1))
		return rawTar(rawBlock("PaxHeaders/f", tar.TypeXHeader, int64(len(recs)), nil), recs, rawBlock("f", tar.TypeReg, 0, nil))
	}, err: tar.ErrFieldTooLong},
	{row: "T44", name: "sparse 1 TiB", layer: sparse("big", 1<<40), err: ErrLimit},
	{row: "T44", name: "sparse 8 MiB stays sparse", layer: sparse("small", 8<<20), check: func(t *testing.T, root, _ string) {
		st := lstatT(t, root, "small")
		if st.Size != 8<<20 || st.Blocks*512 > 1<<20 {
			t.Errorf("size %d, %d bytes allocated", st.Size, st.Blocks*512)
		}
		b := mustRead(t, root, "small")
		if !strings.HasSuffix(b, "tail") || strings.Trim(b[:len(b)-4], "\x00") != "" {
			t.Errorf("contents wrong")
		}
	}},
	{row: "T45", name: "truncated data", layer: func(string) []byte {
		b := tarOf(file("f", strings.Repeat("x", 2000)))
		return b[:512+1000]
	}, err: io.ErrUnexpectedEOF},
	{row: "T46", name: "negative size", layer: rawLayer(rawBlock("f", tar.TypeReg, 0, func(b []byte) {
		b[124] = 0xff
		for i := 125; i < 136; i++ {
			b[i] = 0xff
		}
	})), err: tar.ErrHeader},
	{row: "T46", name: "garbage octal size", layer: rawLayer(rawBlock("f", tar.TypeReg, 0, func(b []byte) { copy(b[124:136], "0000zz9\x00\x00\x00\x00\x00") })), err: tar.ErrHeader},
	{row: "T47", name: "zeros after the archive", layer: func(string) []byte {
		return append(tarOf(file("f", "x")), make([]byte, 3<<20)...)
	}},
	{row: "T47", name: "junk after the archive over the budget", layer: func(string) []byte {
		return append(tarOf(file("f", "x")), bytes.Repeat([]byte("junk"), 1<<18)...)
	}, opts: []Option{WithLimits(1<<19, 0, 0)}, err: ErrLimit},
	{row: "T48", name: "no end-of-archive blocks", layer: func(string) []byte {
		b := tarOf(file("f", "x"))
		return b[:len(b)-1024]
	}, check: content("f", "x")},
	{row: "T49", name: "entry limit", layer: layer(file("a", ""), file("b", ""), file("c", ""), file("d", "")), opts: []Option{WithLimits(0, 3, 0)}, err: ErrLimit},
	{row: "T49", name: "byte limit", layer: layer(file("a", "1234"), file("b", "5678")), opts: []Option{WithLimits(6, 0, 0)}, err: ErrLimit},
	{row: "T49", name: "depth limit", layer: layer(file("a/b/c/d", "")), opts: []Option{WithLimits(0, 0, 3)}, err: ErrLimit},
	{row: "T52", name: "odd mtimes", layer: layer(
		mtimeAt(file("old", ""), time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)),
		mtimeAt(file("future", ""), time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)),
		mtimeAt(pax(file("nanos", "")), time.Unix(1700000000, 123456789)),
	), check: func(t *testing.T, root, _ string) {
		if st := lstatT(t, root, "nanos"); st.Mtim.Sec != 1700000000 || st.Mtim.Nsec != 123456789 {
			t.Errorf("nanos mtime = %d.%09d", st.Mtim.Sec, st.Mtim.Nsec)
		}
	}},
	{row: "T53", name: "read-only and special directory modes", layer: layer(dir("ro/", 0o500), file("ro/f", "x"), dir("zero/", 0), dir("zero/sub/", 0o755), dir("sgid/", 0o2755), dir("tmp/", 0o1777)),
		check: func(t *testing.T, root, _ string) {
			for n, want := range map[string]uint32{"ro": 0o500, "zero": 0, "sgid": 0o2755, "tmp": 0o1777} {
				if st := lstatT(t, root, n); st.Mode&0o7777 != want {
					t.Errorf("%s mode %o, want %o", n, st.Mode&0o7777, want)
				}
			}
			mustRead(t, root, "ro/f")
			if st := lstatT(t, root, "ro"); st.Mtim.Sec != epoch.Unix() {
				t.Errorf("ro mtime %d, want %d", st.Mtim.Sec, epoch.Unix())
			}
		}},
	{row: "T54", name: "uid 4294967294", layer: layer(owned(file("f", ""), 4294967294, 4294967294)), check: func(t *testing.T, root, _ string) {
		if st := lstatT(t, root, "f"); st.Uid != 4294967294 || st.Gid != 4294967294 {
			t.Errorf("owner %d:%d", st.Uid, st.Gid)
		}
	}},
	{row: "T55", name: "non-UTF-8 name", layer: layer(pax(file("caf\xe9", "x"))), check: content("caf\xe9", "x")},
	{row: "T56", name: "component over 255 bytes", layer: layer(file(strings.Repeat("n", 256), "")), err: unix.ENAMETOOLONG},
	{row: "T56", name: "path over 4096 bytes", layer: layer(file(strings.Repeat(strings.Repeat("d", 200)+"/", 25)+"f", "deep")), check: func(t *testing.T, root, _ string) {
		if got := readDeep(t, root, strings.Repeat(strings.Repeat("d", 200)+"/", 25)+"f"); got != "deep" {
			t.Errorf("deep file = %q", got)
		}
	}},
	{row: "T57", name: "10000 levels over the default depth", layer: layer(file(strings.Repeat("a/", 10000)+"f", "")), err: ErrLimit},
	{row: "T57", name: "10000 levels allowed", layer: layer(file(strings.Repeat("a/", 10000)+"f", "x")), opts: []Option{WithLimits(0, 0, 20000)}, check: func(t *testing.T, root, _ string) {
		if got := readDeep(t, root, strings.Repeat("a/", 10000)+"f"); got != "x" {
			t.Errorf("deep file = %q", got)
		}
	}},
	{row: "T58", name: "chain of 40 links", lower: chain(40), layer: layer(file("l0/f", "x")), check: content("d/f", "x")},
	{row: "T58", name: "chain of 41 links", lower: chain(41), layer: layer(file("l0/f", "x")), err: ErrTooManyLinks},
	{row: "T58", name: "symlink loop", lower: apps(fixtures.Symlink("b", "a"), fixtures.Symlink("a", "b")), layer: layer(file("a/f", "x")), err: ErrTooManyLinks},
	{row: "T59", name: "odd names", layer: layer(file("..gitme", "1"), file("foo..", "2"), file("...", "3"), file(`a\b`, "4"), file("C:x", "5"), file(".wh", "6"), file("x.wh.y", "7")),
		check: func(t *testing.T, root, _ string) {
			for _, n := range []string{"..gitme", "foo..", "...", `a\b`, "C:x", ".wh", "x.wh.y"} {
				mustRead(t, root, n)
			}
		}},
}

// capV3 is a VFS_CAP_REVISION_3 value (cap_net_raw+ep, rootid 0).
var capV3 = "\x01\x00\x00\x03\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

func rootMode(m uint32) func(*testing.T, string, string) {
	return func(t *testing.T, root, _ string) {
		st := lstatT(t, root, ".")
		if st.Mode&0o7777 != m || st.Mtim.Sec != epoch.Unix() {
			t.Errorf("root mode %o mtime %d, want %o %d", st.Mode&0o7777, st.Mtim.Sec, m, epoch.Unix())
		}
	}
}

func content(name, want string) func(*testing.T, string, string) {
	return func(t *testing.T, root, _ string) {
		if got := mustRead(t, root, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

func gnu(e ent) ent { e.h.Format = tar.FormatGNU; return e }
func pax(e ent) ent { e.h.Format = tar.FormatPAX; return e }
func owned(e ent, u, g int) ent {
	e.h.Uid, e.h.Gid = u, g
	return e
}
func mtimeAt(e ent, m time.Time) ent { e.h.ModTime = m; return e }

func xattrs(e ent, kv ...string) ent {
	e.h.PAXRecords = map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		e.h.PAXRecords["SCHILY.xattr."+kv[i]] = kv[i+1]
	}
	return e
}

func rawLayer(blocks ...[]byte) func(string) []byte {
	return func(string) []byte { return rawTar(blocks...) }
}

// sparse is a PAX (GNU 0.1) sparse entry of realsize bytes whose only data
// is "tail" at its end.
func sparse(name string, realsize int64) func(string) []byte {
	return func(string) []byte {
		recs := paxRecords("GNU.sparse.size", strconv.FormatInt(realsize, 10), "GNU.sparse.numblocks", "1",
			"GNU.sparse.map", strconv.FormatInt(realsize-4, 10)+",4", "GNU.sparse.name", name)
		return rawTar(rawBlock("PaxHeaders/"+name, tar.TypeXHeader, int64(len(recs)), nil), recs,
			rawBlock("GNUSparseFile/"+name, tar.TypeReg, 4, nil), []byte("tail"))
	}
}

// chain makes l0 -> l1 -> ... -> l(n-1) -> d: n symlinks to a directory.
func chain(n int) func(string) []fixtures.Applier {
	return func(string) []fixtures.Applier {
		as := []fixtures.Applier{fixtures.CreateDir("d", 0o755)}
		for i := 0; i < n; i++ {
			target := "l" + strconv.Itoa(i+1)
			if i == n-1 {
				target = "d"
			}
			as = append(as, fixtures.Symlink(target, "l"+strconv.Itoa(i)))
		}
		return as
	}
}

// readDeep reads root/name one component at a time (name may be longer
// than PATH_MAX).
func readDeep(t *testing.T, root, name string) string {
	t.Helper()
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(name, "/")
	for i, p := range parts {
		flags := unix.O_RDONLY | unix.O_NOFOLLOW
		if i < len(parts)-1 {
			flags |= unix.O_DIRECTORY
		}
		next, err := unix.Openat(fd, p, flags, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatalf("opening component %d: %v", i, err)
		}
		fd = next
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
