package builder

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
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
			err := pathFilter(&in, &out, tc.want)
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
