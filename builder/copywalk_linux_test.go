package builder

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/layercommit/layercommit/internal/safepath"
)

// TestWalkTree: the descriptor-relative walk reports entries in
// fs.WalkDir's order with lstat information, never descends through a
// symlink (to a directory inside the tree or outside it), honours
// fs.SkipDir, and works over the context (os.Root) and an image root
// (safepath) alike.
func TestWalkTree(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	walkMust(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("x"), 0o600))
	top := filepath.Join(dir, "top")
	for _, d := range []string{"a/b", "c", "skip/deep"} {
		walkMust(t, os.MkdirAll(filepath.Join(top, d), 0o755))
	}
	walkMust(t, os.WriteFile(filepath.Join(top, "a/b/f"), []byte("f"), 0o644))
	walkMust(t, os.WriteFile(filepath.Join(top, "skip/deep/g"), []byte("g"), 0o644))
	walkMust(t, os.Symlink(outside, filepath.Join(top, "out")))
	walkMust(t, os.Symlink("a", filepath.Join(top, "in")))
	walkMust(t, os.Symlink("/", filepath.Join(top, "c/root")))

	bctx, err := openContext(dir)
	walkMust(t, err)
	defer bctx.Close()
	root, err := safepath.Open(dir)
	walkMust(t, err)
	defer root.Close()
	want := []string{"top/a d", "top/a/b d", "top/a/b/f -", "top/c d", "top/c/root L", "top/in L", "top/out L", "top/skip d"}
	for _, tc := range []struct {
		name string
		fsys fs.FS
	}{
		{"context", contextFS{bctx}},
		{"image root", rootFS{root}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			err := walkTree(tc.fsys, "top", func(e *srcEntry) error {
				got = append(got, e.p+" "+e.fi.Mode().String()[:1])
				if e.r == "skip" {
					return fs.SkipDir
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("walked %q, want %q", got, want)
			}
		})
	}
}

func walkMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
