package diff_test

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/internal/oracle"
)

// TestXattrsThroughDocker commits a container whose upper dir holds
// user.*, trusted.*, security.capability and overlayfs' own
// trusted.overlay.opaque with the real dockerd 20.10 and 29: the default
// policy gives docker commit's layer byte for byte (security.capability
// alone), and --xattrs lists add exactly what they name, never the
// overlay's marks.
func TestXattrsThroughDocker(t *testing.T) {
	daemons := []struct {
		name    string
		docker  func(testing.TB) *oracle.Docker
		profile compat.Profile
	}{
		{"docker-20.10", oracle.NewDocker, compat.Docker2010},
		{"docker-29", oracle.NewDocker29, compat.Docker29},
	}
	capV2 := string([]byte{0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	for _, dm := range daemons {
		t.Run(dm.name, func(t *testing.T) {
			d := dm.docker(t)
			tag := fmt.Sprintf("layercommit-xattr-lower:%d", time.Now().UnixNano())
			lowerID := container(t, d, d.Base)
			if err := fixtures.Apply(inspect(t, d, lowerID, "{{.GraphDriver.Data.MergedDir}}"),
				fixtures.CreateDir("x/opq", 0o755), fixtures.CreateFile("x/opq/old", []byte("old"), 0o644)); err != nil {
				t.Fatal(err)
			}
			d.Run(t, "commit", lowerID, tag)
			t.Cleanup(func() { d.Try("rmi", "-f", tag) })

			id := container(t, d, tag)
			merged := inspect(t, d, id, "{{.GraphDriver.Data.MergedDir}}")
			if err := fixtures.Apply(merged,
				fixtures.Remove("x/opq"), fixtures.CreateDir("x/opq", 0o755),
				fixtures.Xattr("x/opq", "user.dir", []byte("d")),
				fixtures.CreateFile("x/f", []byte("f"), 0o755),
				fixtures.Xattr("x/f", "security.capability", []byte(capV2)),
				fixtures.Xattr("x/f", "user.alpha", []byte("a")),
				fixtures.Xattr("x/f", "user.empty", nil),
				fixtures.Xattr("x/f", "trusted.beta", []byte("b\x00bin")),
			); err != nil {
				t.Fatal(err)
			}
			upper := inspect(t, d, id, "{{.GraphDriver.Data.UpperDir}}")
			committed := tag + "-commit"
			d.Run(t, "commit", id, committed)
			t.Cleanup(func() { d.Try("rmi", "-f", committed) })
			saved := d.SavedLayers(t, committed)
			want := saved[len(saved)-1]

			// The upper dir really holds the overlay's mark, so a policy
			// that let it through would show it.
			if !strings.Contains(strings.Join(listXattrs(t, upper+"/x/opq"), ","), diff.OpaqueXattr) {
				t.Fatalf("upper x/opq lacks %s", diff.OpaqueXattr)
			}

			got, _ := writeLayer(t, diff.Overlay(upper), diff.WithCompat(dm.profile))
			compareTars(t, "default xattrs vs docker commit", got, want)

			cases := []struct {
				policy        string
				onFile, onDir []string
			}{
				{"security.capability", []string{"security.capability"}, nil},
				{"all", []string{"security.capability", "trusted.beta", "user.alpha", "user.empty"}, []string{"user.dir"}},
				{"user.*", []string{"user.alpha", "user.empty"}, []string{"user.dir"}},
				{"trusted.*,user.alpha", []string{"trusted.beta", "user.alpha"}, nil},
				{"trusted.overlay.opaque,trusted.overlay.*", nil, nil},
			}
			for _, c := range cases {
				t.Run(c.policy, func(t *testing.T) {
					p, err := diff.ParseXattrs(c.policy)
					if err != nil {
						t.Fatal(err)
					}
					layer, _ := writeLayer(t, diff.Overlay(upper), diff.WithCompat(dm.profile), diff.WithXattrs(p))
					recs := xattrRecords(t, layer)
					if g := strings.Join(recs["x/f"], ","); g != strings.Join(c.onFile, ",") {
						t.Errorf("x/f xattrs %q, want %q", g, c.onFile)
					}
					if g := strings.Join(recs["x/opq/"], ","); g != strings.Join(c.onDir, ",") {
						t.Errorf("x/opq/ xattrs %q, want %q", g, c.onDir)
					}
					if c.policy == "all" {
						if v := recValue(t, layer, "x/f", "trusted.beta"); v != "b\x00bin" {
							t.Errorf("trusted.beta = %q", v)
						}
					}
				})
			}
		})
	}
}

func listXattrs(t *testing.T, p string) []string {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range strings.Split(string(buf[:n]), "\x00") {
		if s != "" {
			names = append(names, s)
		}
	}
	return names
}

// xattrRecords maps each entry name to its SCHILY.xattr. names, sorted.
func xattrRecords(t *testing.T, layer []byte) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		for k := range h.PAXRecords {
			if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				out[h.Name] = append(out[h.Name], name)
			}
		}
		sort.Strings(out[h.Name])
	}
}

func recValue(t *testing.T, layer []byte, entry, name string) string {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not found: %v", entry, err)
		}
		if h.Name == entry {
			return h.PAXRecords["SCHILY.xattr."+name]
		}
	}
}
