package diff_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/unpack"
)

// holey makes a file of size bytes with data (bytes of 'a'+i) only at the
// given [offset, length) extents.
func holey(name string, size int64, data ...[2]int64) fixtures.Applier {
	return func(root string) error {
		f, err := os.Create(filepath.Join(root, name))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := f.Truncate(size); err != nil {
			return err
		}
		for i, d := range data {
			if _, err := f.WriteAt(bytes.Repeat([]byte{byte('a' + i)}, int(d[1])), d[0]); err != nil {
				return err
			}
		}
		return nil
	}
}

// extents is a file's data map by SEEK_DATA/SEEK_HOLE with each extent's
// sha256: what a sparse copy must keep, read without reading the holes.
func extents(t *testing.T, p string) []string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	var out []string
	for off := int64(0); off < st.Size(); {
		start, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		end, err := unix.Seek(int(f.Fd()), start, unix.SEEK_HOLE)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, start, end-start)); err != nil {
			t.Fatal(err)
		}
		out = append(out, hex.EncodeToString(h.Sum(nil))[:12]+"@"+itoa(start)+"+"+itoa(end-start))
		off = end
	}
	return append(out, "size "+itoa(st.Size()))
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func allocated(t *testing.T, p string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// TestSparseLayers writes files with holes as PAX sparse entries and reads
// them back with Go's archive/tar, GNU tar (list, and extract with -S) and
// unpack: content right, holes kept (allocation near the data size), the
// layer near the data size.
func TestSparseLayers(t *testing.T) {
	gnutar, err := exec.LookPath("tar")
	if err != nil {
		t.Skip("no GNU tar")
	}
	const k, m, g = 1 << 10, 1 << 20, 1 << 30
	cases := []struct {
		name    string
		size    int64
		data    [][2]int64
		goRead  bool  // small enough to read every byte through archive/tar
		maxData int64 // data bytes on disk, about
	}{
		{"one block in the middle", 8 * m, [][2]int64{{4 * m, 4 * k}}, true, 4 * k},
		{"ends in a hole", 4 * m, [][2]int64{{0, 8 * k}}, true, 8 * k},
		{"ends in data", 4 * m, [][2]int64{{4*m - 4*k, 4 * k}}, true, 4 * k},
		{"only a hole", 3 * m, nil, true, 0},
		{"several extents", 16 * m, [][2]int64{{0, 4 * k}, {1 * m, 12 * k}, {9 * m, 4 * k}, {16*m - 4*k, 4 * k}}, true, 24 * k},
		{"64 GiB with two blocks", 64 * g, [][2]int64{{1 * m, 4 * k}, {40 * g, 8 * k}}, false, 12 * k},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			upper := t.TempDir()
			if err := fixtures.Apply(upper, holey("f", c.size, c.data...)); err != nil {
				t.Fatal(err)
			}
			src := filepath.Join(upper, "f")
			want := extents(t, src)
			layer, _ := writeLayer(t, diff.Overlay(upper), diff.WithSparse())
			if max := c.maxData + 8*k; int64(len(layer)) > max {
				t.Errorf("layer of %d bytes, want at most %d", len(layer), max)
			}

			// archive/tar reads a regular file of the real size.
			tr := tar.NewReader(bytes.NewReader(layer))
			h, err := tr.Next()
			if err != nil {
				t.Fatal(err)
			}
			if h.Name != "f" || h.Size != c.size || h.Typeflag != tar.TypeReg || h.PAXRecords["GNU.sparse.major"] != "1" {
				t.Fatalf("header %q size %d type %c records %v", h.Name, h.Size, h.Typeflag, h.PAXRecords)
			}
			if c.goRead {
				got := sha256.New()
				if _, err := io.Copy(got, tr); err != nil {
					t.Fatal(err)
				}
				f, _ := os.Open(src)
				exp := sha256.New()
				io.Copy(exp, f)
				f.Close()
				if !bytes.Equal(got.Sum(nil), exp.Sum(nil)) {
					t.Error("archive/tar reads other content")
				}
			}
			if _, err := tr.Next(); err != io.EOF {
				t.Fatalf("after the entry: %v", err)
			}

			lt := filepath.Join(t.TempDir(), "l.tar")
			if err := os.WriteFile(lt, layer, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(gnutar, "--list", "-vf", lt).CombinedOutput()
			if err != nil || !strings.Contains(string(out), " "+itoa(c.size)+" ") || !strings.HasSuffix(strings.TrimSpace(string(out)), " f") {
				t.Fatalf("tar --list: %v\n%s", err, out)
			}
			for _, tool := range []string{"GNU tar -xS", "unpack"} {
				dst := t.TempDir()
				if tool == "unpack" {
					if _, err := unpack.Apply(context.Background(), dst, bytes.NewReader(layer)); err != nil {
						t.Fatal(err)
					}
				} else if out, err := exec.Command(gnutar, "-C", dst, "-xSf", lt).CombinedOutput(); err != nil {
					t.Fatalf("tar -x: %v\n%s", err, out)
				}
				p := filepath.Join(dst, "f")
				if got := extents(t, p); !reflect.DeepEqual(got, want) {
					t.Errorf("%s: extents %q, want %q", tool, got, want)
				}
				if a := allocated(t, p); a > c.maxData+64*k {
					t.Errorf("%s: %d bytes allocated for %d of data", tool, a, c.maxData)
				}
			}
		})
	}
}

// TestSparseGolden: the sparse layer of fixtures.Sparse is deterministic
// (the same diffID from two walks and profiles and a golden value, on a
// file system of 4 KiB blocks: the data extent is the last block), and
// without WithSparse the same file is the engine's dense entry.
func TestSparseGolden(t *testing.T) {
	upper := t.TempDir()
	t0 := time.Unix(1700000000, 0)
	if err := fixtures.Apply(upper, fixtures.Sparse("s", 5<<20), fixtures.Chtimes("s", t0, t0)); err != nil {
		t.Fatal(err)
	}
	_, id1 := writeLayer(t, diff.Overlay(upper), diff.WithSparse())
	l2, id2 := writeLayer(t, diff.Overlay(upper), diff.WithSparse(), diff.WithCompat(compat.Docker29))
	const golden = "sha256:c48d3660a2c50d30cc7139d3b0bc00ae414fef6033cfd3b9e424438b3cee13d5"
	if id1 != id2 || id1 != golden {
		t.Errorf("diffIDs %s, %s, want %s", id1, id2, golden)
	}
	if len(l2) != 7168 { // PAX header 2 blocks, USTAR 1, map 1, data 8, trailer 2
		t.Errorf("sparse layer of %d bytes", len(l2))
	}
	dense, _ := writeLayer(t, diff.Overlay(upper))
	h, err := tar.NewReader(bytes.NewReader(dense)).Next()
	if err != nil || len(dense) < 5<<20 || len(h.PAXRecords) != 0 {
		t.Errorf("dense layer: %d bytes, %v, records %v", len(dense), err, h.PAXRecords)
	}
}
