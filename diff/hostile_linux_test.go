package diff_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/internal/oracle"
)

// entry is one tar entry read back from a layer.
type entry struct {
	h    *tar.Header
	data string
}

func readLayer(t *testing.T, layer []byte) []entry {
	t.Helper()
	var es []entry
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return es
		}
		if err != nil {
			t.Fatalf("reading the layer back: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, entry{h, string(b)})
	}
}

func find(es []entry, name string) *entry {
	for i := range es {
		if es[i].h.Name == name {
			return &es[i]
		}
	}
	return nil
}

func names(es []entry) []string {
	var ns []string
	for _, e := range es {
		ns = append(ns, e.h.Name)
	}
	return ns
}

// upperCase is one upper-dir row of HOSTILE.md section 5.2: an upper dir
// built by code, walked by a diff source (Overlay unless src is set) and
// written by diff.Write.
type upperCase struct {
	row, name string
	upper     []fixtures.Applier
	src       func(upper string) diff.Source
	opts      []diff.Option
	err       error // nil: the layer is written
	check     func(t *testing.T, es []entry)
}

func TestUpperDirs(t *testing.T) {
	oracle.Root(t)
	for _, c := range upperCases {
		t.Run(c.row+"/"+c.name, func(t *testing.T) {
			t.Parallel()
			upper := filepath.Join(t.TempDir(), "upper")
			if err := os.Mkdir(upper, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := fixtures.Apply(upper, c.upper...); err != nil {
				t.Fatal(err)
			}
			src := diff.Overlay(upper)
			if c.src != nil {
				src = c.src(upper)
			}
			var b bytes.Buffer
			_, _, err := diff.Write(context.Background(), &b, src, c.opts...)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("Write error = %v, want %v", err, c.err)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error is not one line: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Write: %v", err)
			}
			c.check(t, readLayer(t, b.Bytes()))
		})
	}
}

var t0 = time.Unix(1700000000, 0)

// wantHeader checks type, mode, size and (when set) link name of an entry.
func wantHeader(name string, typ byte, mode int64, linkname string) func(*testing.T, []entry) {
	return func(t *testing.T, es []entry) {
		e := find(es, name)
		if e == nil {
			t.Fatalf("no entry %q in %q", name, names(es))
		}
		if e.h.Typeflag != typ || e.h.Mode&0o7777 != mode || e.h.Linkname != linkname {
			t.Errorf("%s: type %q mode %o link %q, want %q %o %q", name, e.h.Typeflag, e.h.Mode&0o7777, e.h.Linkname, typ, mode, linkname)
		}
	}
}

func noXattrs(es []entry, prefix string) error {
	for _, e := range es {
		for k := range e.h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr."+prefix) {
				return fmt.Errorf("%s carries %s", e.h.Name, k)
			}
		}
	}
	return nil
}

var upperCases = []upperCase{
	// U1: Docker's bytes: moby writes the whiteout whether or not a
	// lower has the name (only the merged view could tell).
	{row: "U1", name: "char 0/0 is a whiteout", upper: []fixtures.Applier{fixtures.Whiteout("gone")}, check: func(t *testing.T, es []entry) {
		wantHeader(".wh.gone", tar.TypeReg, 0o600, "")(t, es)
		if len(es) != 1 || es[0].h.Size != 0 {
			t.Errorf("entries %q", names(es))
		}
	}},
	{row: "U2", name: "char 1/3 is a device", upper: []fixtures.Applier{fixtures.Mknod("null", 0o20644, 1, 3)}, check: func(t *testing.T, es []entry) {
		wantHeader("null", tar.TypeChar, 0o644, "")(t, es)
		if e := find(es, "null"); e.h.Devmajor != 1 || e.h.Devminor != 3 {
			t.Errorf("device %d/%d", e.h.Devmajor, e.h.Devminor)
		}
	}},
	// U3: whiteouts sharing one inode. Docker's bytes (pinned by the
	// conformance test): both are regular whiteouts, never TypeLink, and
	// the second keeps the stale Linkname moby's hard-link step gave it.
	// Readers ignore Linkname on a regular entry.
	{row: "U3", name: "whiteouts sharing an inode", upper: []fixtures.Applier{fixtures.Whiteout("a"), fixtures.Link("a", "b")}, check: func(t *testing.T, es []entry) {
		wantHeader(".wh.a", tar.TypeReg, 0o600, "")(t, es)
		wantHeader(".wh.b", tar.TypeReg, 0o600, "a")(t, es)
	}},
	// U4: an xattr whiteout is refused rather than exported as an empty file.
	{row: "U4", name: "xattr whiteout", upper: []fixtures.Applier{
		fixtures.CreateDir("d", 0o755), fixtures.Xattr("d", "trusted.overlay.opaque", []byte("x")),
		fixtures.CreateFile("d/gone", nil, 0o644), fixtures.Xattr("d/gone", "trusted.overlay.whiteout", nil),
	}, err: diff.ErrOverlayFeature},
	{row: "U5", name: "opaque y", upper: []fixtures.Applier{fixtures.CreateDir("d", 0o755), fixtures.Opaque("d")}, check: func(t *testing.T, es []entry) {
		if got := strings.Join(names(es), ","); got != "d/,d/.wh..wh..opq" {
			t.Errorf("entries %s", got)
		}
	}},
	{row: "U6", name: "opaque values other than y", upper: func() []fixtures.Applier {
		var as []fixtures.Applier
		for i, v := range []string{"x", "n", "Y", "yes", "", "yy"} {
			d := fmt.Sprintf("d%d", i)
			as = append(as, fixtures.CreateDir(d, 0o755), fixtures.Xattr(d, "trusted.overlay.opaque", []byte(v)))
		}
		return as
	}(), check: func(t *testing.T, es []entry) {
		for _, e := range es {
			if strings.Contains(e.h.Name, ".wh.") {
				t.Errorf("%s: only the single byte y is opaque", e.h.Name)
			}
		}
		if len(es) != 6 {
			t.Errorf("entries %q", names(es))
		}
	}},
	{row: "U7", name: "user.overlay.opaque with userxattr", upper: []fixtures.Applier{
		fixtures.CreateDir("u", 0o755), fixtures.Xattr("u", "user.overlay.opaque", []byte("y")),
		fixtures.CreateDir("t", 0o755), fixtures.Opaque("t"),
	}, src: func(u string) diff.Source { return diff.Overlay(u, diff.WithUserXattr()) }, check: func(t *testing.T, es []entry) {
		if find(es, "u/.wh..wh..opq") == nil || find(es, "t/.wh..wh..opq") != nil {
			t.Errorf("entries %q: only the mount's namespace counts", names(es))
		}
		if err := noXattrs(es, "user.overlay."); err != nil {
			t.Error(err)
		}
	}},
	{row: "U7", name: "user.overlay.opaque without userxattr", upper: []fixtures.Applier{
		fixtures.CreateDir("u", 0o755), fixtures.Xattr("u", "user.overlay.opaque", []byte("y")),
	}, check: func(t *testing.T, es []entry) {
		if find(es, "u/.wh..wh..opq") != nil {
			t.Errorf("entries %q", names(es))
		}
	}},
	{row: "U8", name: "redirect without lowers", upper: []fixtures.Applier{fixtures.CreateDir("d", 0o755), fixtures.Xattr("d", "trusted.overlay.redirect", []byte("/old"))}, err: diff.ErrOverlayFeature},
	{row: "U9", name: "metacopy without lowers", upper: []fixtures.Applier{fixtures.CreateFile("f", nil, 0o644), fixtures.Xattr("f", "trusted.overlay.metacopy", nil)}, err: diff.ErrOverlayFeature},
	{row: "U10", name: "internal overlay xattrs never exported", upper: []fixtures.Applier{
		fixtures.CreateDir("d", 0o755), fixtures.Xattr("d", "trusted.overlay.impure", []byte("y")), fixtures.Xattr("d", "trusted.overlay.origin", []byte("o")),
		fixtures.CreateFile("f", []byte("x"), 0o644), fixtures.Xattr("f", "trusted.overlay.nlink", []byte("U+1")), fixtures.Xattr("f", "trusted.overlay.upper", []byte("u")),
		fixtures.Xattr("f", "trusted.overlay.uuid", []byte("u")), fixtures.Xattr("f", "user.note", []byte("n")),
	}, check: func(t *testing.T, es []entry) {
		if err := noXattrs(es, ""); err != nil {
			t.Error(err) // only security.capability is exported
		}
		if len(es) != 2 {
			t.Errorf("entries %q", names(es))
		}
	}},
	{row: "U11", name: "socket skipped with a warning", upper: []fixtures.Applier{fixtures.Socket("s"), fixtures.CreateFile("f", nil, 0o644)},
		src: func(u string) diff.Source {
			return diff.Overlay(u, diff.WithWarner(func(f string, a ...any) {
				if !strings.Contains(fmt.Sprintf(f, a...), "socket") {
					panic("unexpected warning")
				}
			}))
		}, check: func(t *testing.T, es []entry) {
			if strings.Join(names(es), ",") != "f" {
				t.Errorf("entries %q", names(es))
			}
		}},
	{row: "U12", name: "fifo", upper: []fixtures.Applier{fixtures.Fifo("p", 0o640)}, check: wantHeader("p", tar.TypeFifo, 0o640, "")},
	{row: "U13", name: "sparse 1 TB over the opt-in cap", upper: []fixtures.Applier{fixtures.Sparse("big", 1<<40)}, opts: []diff.Option{diff.WithMaxFileSize(1 << 30)}, err: diff.ErrFileTooLarge},
	{row: "U13", name: "small file under the cap", upper: []fixtures.Applier{fixtures.Sparse("small", 1<<20)}, opts: []diff.Option{diff.WithMaxFileSize(1 << 30)}, check: func(t *testing.T, es []entry) {
		if e := find(es, "small"); e == nil || len(e.data) != 1<<20 || !strings.HasSuffix(e.data, "end") {
			t.Errorf("small not written whole")
		}
	}},
	{row: "U15", name: "uid and gid 4294967294 need PAX", upper: []fixtures.Applier{fixtures.CreateFile("f", nil, 0o644), fixtures.Chown("f", 4294967294, 4294967294)}, check: func(t *testing.T, es []entry) {
		e := find(es, "f")
		if e.h.Uid != 4294967294 || e.h.Gid != 4294967294 || e.h.PAXRecords["uid"] != "4294967294" {
			t.Errorf("owner %d:%d records %v", e.h.Uid, e.h.Gid, e.h.PAXRecords)
		}
	}},
	{row: "U17", name: "long names and link targets", upper: []fixtures.Applier{
		fixtures.CreateDir(strings.Repeat("d", 120), 0o755),
		fixtures.CreateFile(strings.Repeat("d", 120)+"/"+strings.Repeat("f", 200), []byte("x"), 0o644),
		fixtures.Symlink(strings.Repeat("t", 150), "l"),
	}, check: func(t *testing.T, es []entry) {
		if e := find(es, strings.Repeat("d", 120)+"/"+strings.Repeat("f", 200)); e == nil || e.data != "x" {
			t.Errorf("long name lost: %q", names(es))
		}
		wantHeader("l", tar.TypeSymlink, 0o777, strings.Repeat("t", 150))(t, es)
	}},
	{row: "U18", name: "non-UTF-8 name", upper: []fixtures.Applier{fixtures.CreateFile("caf\xe9", []byte("x"), 0o644)}, check: func(t *testing.T, es []entry) {
		if e := find(es, "caf\xe9"); e == nil || e.data != "x" {
			t.Errorf("raw name lost: %q", names(es))
		}
	}},
	{row: "U19", name: "hard-link group inside the upper", upper: []fixtures.Applier{fixtures.CreateFile("b", []byte("data"), 0o644), fixtures.Link("b", "a"), fixtures.Link("b", "c")}, check: func(t *testing.T, es []entry) {
		if e := find(es, "a"); e == nil || e.h.Typeflag != tar.TypeReg || e.data != "data" {
			t.Errorf("a does not carry the data")
		}
		wantHeader("b", tar.TypeLink, 0o644, "a")(t, es)
		wantHeader("c", tar.TypeLink, 0o644, "a")(t, es)
	}},
	{row: "U20", name: "hard-link group reaching outside the layer", upper: []fixtures.Applier{
		fixtures.CreateDir("in", 0o755), fixtures.CreateDir("out", 0o755), fixtures.CreateFile("out/lower", []byte("data"), 0o644), fixtures.Link("out/lower", "in/f"),
	}, src: func(u string) diff.Source { return diff.Overlay(filepath.Join(u, "in")) }, check: func(t *testing.T, es []entry) {
		if e := find(es, "f"); e == nil || e.h.Typeflag != tar.TypeReg || e.data != "data" {
			t.Errorf("f is not written whole: %q", names(es))
		}
	}},
	{row: "U21", name: "file grows while read", upper: []fixtures.Applier{fixtures.CreateFile("f", []byte("short"), 0o644)},
		src: func(u string) diff.Source {
			return beforeEach{diff.Overlay(u), "f", func() error {
				return os.WriteFile(filepath.Join(u, "f"), []byte("much longer now"), 0o644)
			}}
		}, err: diff.ErrSizeChanged},
	{row: "U21", name: "file shrinks while read", upper: []fixtures.Applier{fixtures.CreateFile("f", []byte("long enough"), 0o644)},
		src: func(u string) diff.Source {
			return beforeEach{diff.Overlay(u), "f", func() error { return os.Truncate(filepath.Join(u, "f"), 2) }}
		}, err: diff.ErrSizeChanged},
	{row: "U22", name: "file deleted between readdir and open", upper: []fixtures.Applier{fixtures.CreateFile("f", []byte("x"), 0o644)},
		src: func(u string) diff.Source {
			return beforeEach{diff.Overlay(u), "f", func() error { return os.Remove(filepath.Join(u, "f")) }}
		}, err: os.ErrNotExist},
	// The race review found: a file swapped for a symlink (or another
	// file) between the walk's lstat and the open must not put the
	// target's bytes into the layer.
	{row: "U22", name: "file swapped for a symlink", upper: []fixtures.Applier{fixtures.CreateFile("f", []byte("harmless"), 0o644), fixtures.CreateFile("secret", []byte("TOPSECR!"), 0o600)},
		src: func(u string) diff.Source {
			return beforeEach{diff.Overlay(u), "f", func() error {
				if err := os.Remove(filepath.Join(u, "f")); err != nil {
					return err
				}
				return os.Symlink("secret", filepath.Join(u, "f"))
			}}
		}, err: diff.ErrFileChanged},
	{row: "U22", name: "file swapped for another file of the same size", upper: []fixtures.Applier{fixtures.CreateFile("f", []byte("harmless"), 0o644), fixtures.CreateFile("other", []byte("SECRETS!"), 0o600)},
		src: func(u string) diff.Source {
			return beforeEach{diff.Overlay(u), "f", func() error {
				return os.Rename(filepath.Join(u, "other"), filepath.Join(u, "f"))
			}}
		}, err: diff.ErrFileChanged},
	{row: "U22", name: "file swapped for a fifo", upper: []fixtures.Applier{fixtures.CreateFile("f", []byte("harmless"), 0o644), fixtures.Fifo("p", 0o644)},
		src: func(u string) diff.Source {
			return beforeEach{diff.Overlay(u), "f", func() error {
				return os.Rename(filepath.Join(u, "p"), filepath.Join(u, "f"))
			}}
		}, err: diff.ErrFileChanged},
	{row: "U23", name: "mode 000 directory and file (root reads them)", upper: []fixtures.Applier{
		fixtures.CreateDir("d", 0o755), fixtures.CreateFile("d/f", []byte("x"), 0), fixtures.Chmod("d", 0),
	}, check: func(t *testing.T, es []entry) {
		wantHeader("d/", tar.TypeDir, 0, "")(t, es)
		if e := find(es, "d/f"); e == nil || e.data != "x" {
			t.Errorf("d/f not read")
		}
	}},
	{row: "U24", name: "future mtime with nanoseconds", upper: []fixtures.Applier{fixtures.CreateFile("f", nil, 0o644), fixtures.Chtimes("f", t0, time.Unix(4102444800, 999999999))},
		check: func(t *testing.T, es []entry) {
			if e := find(es, "f"); !e.h.ModTime.Equal(time.Unix(4102444800, 0)) {
				t.Errorf("mtime %v, want whole seconds", e.h.ModTime)
			}
		}},
	{row: "U24", name: "mtime clamped to SOURCE_DATE_EPOCH", upper: []fixtures.Applier{fixtures.CreateFile("f", nil, 0o644), fixtures.Chtimes("f", t0, time.Unix(4102444800, 5))},
		opts: []diff.Option{diff.WithMtimeClamp(t0.Unix())}, check: func(t *testing.T, es []entry) {
			if e := find(es, "f"); !e.h.ModTime.Equal(t0) {
				t.Errorf("mtime %v, want %v", e.h.ModTime, t0)
			}
		}},
	{row: "U25", name: "capability v3 written as v2", upper: []fixtures.Applier{fixtures.CreateFile("ping", nil, 0o755), fixtures.Xattr("ping", "security.capability", []byte(capV3))},
		check: func(t *testing.T, es []entry) {
			v := find(es, "ping").h.PAXRecords["SCHILY.xattr.security.capability"]
			if len(v) != 20 || v[3] != 2 {
				t.Errorf("capability %q, want revision 2 (20 bytes)", v)
			}
		}},
	// U26: Docker's bytes: moby writes a real file named .wh.foo as it
	// is, and readers take it for a whiteout (the OCI spec says such a
	// file cannot be represented). Kept for docker-exact output.
	{row: "U26", name: "real file named .wh.foo", upper: []fixtures.Applier{fixtures.CreateFile(".wh.foo", []byte("x"), 0o644)}, check: wantHeader(".wh.foo", tar.TypeReg, 0o644, "")},
	{row: "U27", name: "nothing changed", check: func(t *testing.T, es []entry) {
		if len(es) != 0 {
			t.Errorf("entries %q", names(es))
		}
	}},
	// U28: parents before children, entries sorted by the raw bytes of
	// their on-disk names; a whiteout sits where its name sorts (moby's
	// order, not the OCI's "whiteouts first").
	{row: "U28", name: "order", upper: []fixtures.Applier{
		fixtures.CreateDir("a/b", 0o755), fixtures.CreateFile("a/b/c", nil, 0o644), fixtures.CreateFile("a/z", nil, 0o644), fixtures.Whiteout("a/m"), fixtures.CreateFile("B", nil, 0o644),
	}, check: func(t *testing.T, es []entry) {
		if got := strings.Join(names(es), ","); got != "B,a/,a/b/,a/b/c,a/.wh.m,a/z" {
			t.Errorf("order %s", got)
		}
	}},
}

// capV3 is a VFS_CAP_REVISION_3 value (cap_net_raw+ep, rootid 0).
var capV3 = "\x01\x00\x00\x03\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

// beforeEach runs fn just before the change for path reaches Write: the
// moment between the walk's lstat and the open of the file's data.
type beforeEach struct {
	src  diff.Source
	path string
	fn   func() error
}

func (b beforeEach) Changes(ctx context.Context, fn diff.ChangeFunc) error {
	return b.src.Changes(ctx, func(c diff.Change) error {
		if c.Path == b.path {
			if err := b.fn(); err != nil {
				return err
			}
		}
		return fn(c)
	})
}

// TestEmptyLayerDiffID is U27's digest: an empty change set is 1024 zero
// bytes, Docker's empty-layer diffID.
func TestEmptyLayerDiffID(t *testing.T) {
	h, n, err := diff.Write(context.Background(), io.Discard, diff.Overlay(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if h.String() != "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef" || n != 1024 {
		t.Errorf("empty layer %s, %d bytes", h, n)
	}
}
