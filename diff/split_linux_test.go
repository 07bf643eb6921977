package diff_test

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/unpack"
)

// TestSplit: the parts of a split change set are each at most the limit
// (but for a part of one entry larger than it), each valid alone (every
// entry's parent and every hard link's target earlier in the same part,
// no opaque marker on a repeated directory), and applied in order over
// the lower they give the merged view.
func TestSplit(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB
	c := mountCase(t, append(smallLower(),
		fixtures.CreateDir("opq", 0o755), fixtures.CreateFile("opq/old", []byte("old\n"), 0o644)),
		[]fixtures.Applier{
			fixtures.Remove("gone"),
			fixtures.Remove("keep"),
			fixtures.Remove("opq"),
			fixtures.CreateDir("opq/a/b", 0o750),
			fixtures.Many("opq/a/b", "f", 40),
			fixtures.CreateFile("opq/a/b/big", big, 0o644),
			fixtures.CreateFile("opq/a/l1", []byte("linked\n"), 0o644),
			fixtures.Link("opq/a/l1", "opq/a/l2"),
			fixtures.Link("opq/a/l1", "opq/z"),
			fixtures.CreateDir("zz/"+strings.Repeat("long", 40), 0o755),
			fixtures.Many("zz/"+strings.Repeat("long", 40), "g", 20),
		})
	whole, _ := writeLayer(t, diff.Overlay(c.upper))
	cases := []struct {
		name   string
		max    int64
		parts  int // at least
		oneBig bool
	}{
		{"no split when it fits", int64(len(whole)), 1, false},
		{"a few parts", int64(len(whole)) / 3, 3, false},
		{"many small parts, one file over the limit", 8 << 10, 8, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			parts, err := diff.Split(context.Background(), diff.Overlay(c.upper), tc.max)
			if err != nil {
				t.Fatal(err)
			}
			if len(parts) < tc.parts || (tc.parts == 1 && len(parts) != 1) {
				t.Fatalf("%d parts, want at least %d", len(parts), tc.parts)
			}
			tree := filepath.Join(t.TempDir(), "tree")
			must(t, os.Mkdir(tree, 0o755))
			must(t, fixtures.CopyTree(c.lower, tree))
			seenBig, markers := false, 0
			for i, p := range parts {
				layer, _ := writeLayer(t, p)
				es := readLayer(t, layer)
				if int64(len(layer)) > tc.max {
					if len(es) > 1 && !(len(es) <= 4 && find(es, "opq/a/b/big") != nil) {
						t.Errorf("part %d: %d bytes, over %d, with %d entries", i, len(layer), tc.max, len(es))
					}
					seenBig = true
				}
				checkPartAlone(t, i, es)
				markers += countOpaque(es)
				if _, err := unpack.Apply(context.Background(), tree, bytes.NewReader(layer)); err != nil {
					t.Fatalf("applying part %d: %v", i, err)
				}
			}
			if markers != 1 {
				t.Errorf("%d opaque markers in all parts, want 1 (opq's, where it is first written)", markers)
			}
			if seenBig != tc.oneBig {
				t.Errorf("a part over the limit: %t, want %t", seenBig, tc.oneBig)
			}
			diffs, err := fixtures.Compare(tree, c.merged, fixtures.CompareOptions{})
			must(t, err)
			if len(diffs) > 0 {
				t.Fatalf("parts applied in order differ from the merged view:\n%s", strings.Join(diffs[:min(5, len(diffs))], "\n"))
			}
		})
	}
}

// checkPartAlone fails unless every entry of a part has its parent dir
// and its hard-link target earlier in the part, and the opaque marker of
// a dir comes only where the dir is first written.
func checkPartAlone(t *testing.T, i int, es []entry) {
	t.Helper()
	have := map[string]bool{}
	for _, e := range es {
		name := strings.TrimSuffix(e.h.Name, "/")
		if dir := path.Dir(name); dir != "." && !have[dir] {
			t.Errorf("part %d: %s comes without its parent %s", i, name, dir)
		}
		if e.h.Typeflag == tar.TypeLink && !have[e.h.Linkname] {
			t.Errorf("part %d: %s links to %s, not in the part", i, name, e.h.Linkname)
		}
		have[name] = true
	}
	for _, e := range es {
		if path.Base(strings.TrimSuffix(e.h.Name, "/")) == diff.WhiteoutOpaqueDir && path.Dir(e.h.Name) != "opq" {
			t.Errorf("part %d: opaque marker %s on a dir that is not opaque", i, e.h.Name)
		}
	}
}

func countOpaque(es []entry) int {
	n := 0
	for _, e := range es {
		if path.Base(e.h.Name) == diff.WhiteoutOpaqueDir {
			n++
		}
	}
	return n
}
