package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/layercommit/layercommit/statedir"
)

// TestPathFilter: what COPY --from's extraction keeps of a layer stream
// for the names it reads, and when it needs the whole tree instead.
func TestPathFilter(t *testing.T) {
	dir := func(n string) *tar.Header { return &tar.Header{Name: n, Typeflag: tar.TypeDir, Mode: 0o755} }
	reg := func(n string) *tar.Header { return &tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: 1} }
	sym := func(n, to string) *tar.Header {
		return &tar.Header{Name: n, Typeflag: tar.TypeSymlink, Linkname: to, Mode: 0o777}
	}
	hard := func(n, to string) *tar.Header { return &tar.Header{Name: n, Typeflag: tar.TypeLink, Linkname: to} }
	for _, tc := range []struct {
		name    string
		want    []string
		entries []*tar.Header
		kept    []string
		whole   bool
	}{
		{"a file and its parents", []string{"out/count"},
			[]*tar.Header{dir("./"), dir("etc/"), reg("etc/passwd"), dir("out/"), reg("out/count"), reg("out/other")},
			[]string{"./", "out/", "out/count"}, false},
		{"a tree and what is below it", []string{"src"},
			[]*tar.Header{dir("src/"), dir("src/a/"), reg("src/a/x"), sym("src/l", "/etc"), reg("srcx")},
			[]string{"src/", "src/a/", "src/a/x", "src/l"}, false},
		{"whiteouts and opaque markers of kept names", []string{"src/a"},
			[]*tar.Header{reg("src/.wh.a"), reg("src/a/.wh..wh..opq"), reg("src/.wh.b"), reg(".wh.etc")},
			[]string{"src/.wh.a", "src/a/.wh..wh..opq"}, false},
		{"a symlink on the way", []string{"var/run/f"},
			[]*tar.Header{dir("var/"), sym("var/run", "/run"), dir("run/"), reg("run/f")}, nil, true},
		{"the name itself a symlink", []string{"f"},
			[]*tar.Header{sym("f", "g"), reg("g")}, nil, true},
		{"a hard link to a name not kept", []string{"out"},
			[]*tar.Header{reg("etc/x"), dir("out/"), hard("out/x", "etc/x")}, nil, true},
		{"a hard link inside the kept names", []string{"out"},
			[]*tar.Header{dir("out/"), reg("out/y"), hard("out/x", "/out/y")},
			[]string{"out/", "out/y", "out/x"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var in bytes.Buffer
			tw := tar.NewWriter(&in)
			for _, h := range tc.entries {
				if err := tw.WriteHeader(h); err != nil {
					t.Fatal(err)
				}
				if h.Size > 0 {
					tw.Write([]byte("x"))
				}
			}
			tw.Close()
			var out bytes.Buffer
			err := pathFilter(&in, &out, tc.want, nil)
			if tc.whole {
				if !errors.Is(err, errNeedWholeTree) {
					t.Fatalf("err %v, want errNeedWholeTree", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var kept []string
			tr := tar.NewReader(&out)
			for {
				h, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				kept = append(kept, h.Name)
			}
			if !reflect.DeepEqual(kept, tc.kept) {
				t.Errorf("kept %q, want %q", kept, tc.kept)
			}
		})
	}
}

// readCounting is a layer that notes each read of its stream.
type readCounting struct {
	v1.Layer
	reads *int
}

func (l readCounting) Uncompressed() (io.ReadCloser, error) {
	*l.reads++
	return l.Layer.Uncompressed()
}

func (l readCounting) Compressed() (io.ReadCloser, error) {
	*l.reads++
	return l.Layer.Compressed()
}

// TestExtractPathsTopDown: COPY --from's extraction reads a stage's
// layers from the top and stops at the layer that settles every name it
// reads (a plain file); anything else there (a directory, a whiteout or
// opaque marker on the way, a hard link) reads every layer, and the tree
// is what the whole stack gives.
func TestExtractPathsTopDown(t *testing.T) {
	type ent struct{ name, body string } // body "" and name ending "/": a dir; "->x": a hard link
	for _, tc := range []struct {
		name   string
		layers [][]ent // bottom first
		want   []string
		read   []int // layers read, by index
		files  map[string]string
		absent []string
	}{
		{"a file the top layer wrote",
			[][]ent{{{"etc/", ""}, {"etc/passwd", "root"}, {"count", "old"}}, {{"count", "new"}}},
			[]string{"count"}, []int{1}, map[string]string{"count": "new"}, []string{"etc/passwd"}},
		{"a file below the top",
			[][]ent{{{"count", "old"}}, {{"other", "x"}}, {{"more", "y"}}},
			[]string{"count"}, []int{2, 1, 0}, map[string]string{"count": "old"}, []string{"other"}},
		{"a file in a directory the top layer wrote",
			[][]ent{{{"out/", ""}, {"out/f", "old"}}, {{"out/", ""}, {"out/f", "new"}}},
			[]string{"out/f"}, []int{1}, map[string]string{"out/f": "new"}, nil},
		{"a directory merges with the layers below",
			[][]ent{{{"out/", ""}, {"out/a", "a"}}, {{"out/", ""}, {"out/b", "b"}}},
			[]string{"out"}, []int{1, 0}, map[string]string{"out/a": "a", "out/b": "b"}, nil},
		{"a whiteout above the file",
			[][]ent{{{"count", "old"}}, {{".wh.count", ""}}},
			[]string{"count"}, []int{1, 0}, nil, []string{"count"}},
		{"an opaque parent",
			[][]ent{{{"d/", ""}, {"d/f", "old"}, {"d/g", "g"}}, {{"d/", ""}, {"d/.wh..wh..opq", ""}, {"d/f", "new"}}},
			[]string{"d/f"}, []int{1, 0}, map[string]string{"d/f": "new"}, nil},
		{"a hard link",
			[][]ent{{{"y", "old"}}, {{"y", "new"}, {"x", "->y"}}},
			[]string{"x", "y"}, []int{1, 0}, map[string]string{"x": "new"}, nil},
		{"two names settled in two layers",
			[][]ent{{{"lib/", ""}, {"lib/f", "f"}}, {{"lib/", ""}, {"lib/g", "g"}}, {{"count", "c"}}},
			[]string{"count", "lib/g"}, []int{2, 1}, map[string]string{"count": "c", "lib/g": "g"}, []string{"lib/f"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reads := make([]int, len(tc.layers))
			var ls []v1.Layer
			for i, es := range tc.layers {
				var buf bytes.Buffer
				tw := tar.NewWriter(&buf)
				for _, e := range es {
					h := &tar.Header{Name: e.name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(e.body)), ModTime: time.Unix(1700000000, 0)}
					switch {
					case strings.HasSuffix(e.name, "/"):
						h.Typeflag, h.Mode = tar.TypeDir, 0o755
					case strings.HasPrefix(e.body, "->"):
						h.Typeflag, h.Linkname, h.Size = tar.TypeLink, strings.TrimPrefix(e.body, "->"), 0
					}
					if err := tw.WriteHeader(h); err != nil {
						t.Fatal(err)
					}
					if h.Size > 0 {
						tw.Write([]byte(e.body))
					}
				}
				tw.Close()
				data := buf.Bytes()
				l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
				if err != nil {
					t.Fatal(err)
				}
				ls = append(ls, readCounting{Layer: l, reads: &reads[i]})
			}
			img, err := mutate.AppendLayers(empty.Image, ls...)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := img.ConfigFile(); err != nil {
				t.Fatal(err)
			}
			st, err := statedir.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			for i := range reads {
				reads[i] = 0
			}
			b := &build{st: st}
			tmp, err := b.extractPaths(context.Background(), img, tc.want)
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(tmp)
			var read []int
			for i := len(reads) - 1; i >= 0; i-- {
				if reads[i] > 0 {
					read = append(read, i)
				}
			}
			if !reflect.DeepEqual(read, tc.read) {
				t.Errorf("layers read %v, want %v", read, tc.read)
			}
			for n, body := range tc.files {
				got, err := os.ReadFile(filepath.Join(tmp, "tree", n))
				if err != nil || string(got) != body {
					t.Errorf("%s: %q, %v; want %q", n, got, err, body)
				}
			}
			for _, n := range tc.absent {
				if _, err := os.Lstat(filepath.Join(tmp, "tree", n)); err == nil {
					t.Errorf("%s is in the tree", n)
				}
			}
		})
	}
}
