package unpack

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ent is one tar entry for a test archive: a header and, for files, data.
type ent struct {
	h    tar.Header
	data string
}

var epoch = time.Unix(1700000000, 0)

func file(name, data string) ent {
	return ent{h: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch}, data: data}
}

func dir(name string, mode int64) ent {
	return ent{h: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: epoch}}
}

func symlink(name, target string) ent {
	return ent{h: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: epoch}}
}

func hardlink(name, target string) ent {
	return ent{h: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644, ModTime: epoch}}
}

func node(name string, typ byte, major, minor int64) ent {
	return ent{h: tar.Header{Typeflag: typ, Name: name, Mode: 0o600, Devmajor: major, Devminor: minor, ModTime: epoch}}
}

// tarOf writes es as a tar stream, end-of-archive blocks included. It
// panics if Go's writer refuses a header: the test tables are static.
func tarOf(es ...ent) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range es {
		h := e.h
		if err := tw.WriteHeader(&h); err != nil {
			panic(fmt.Sprintf("writing header %q: %v", h.Name, err))
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			panic(fmt.Sprintf("writing %q: %v", h.Name, err))
		}
	}
	if err := tw.Close(); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// rawBlock is a USTAR header block made by hand, for headers Go's writer
// refuses to make; patch may change any field before the checksum is set.
func rawBlock(name string, typ byte, size int64, patch func(b []byte)) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	copy(b[100:108], "0000644\x00")
	copy(b[108:116], "0000000\x00")
	copy(b[116:124], "0000000\x00")
	copy(b[124:136], fmt.Sprintf("%011o\x00", size))
	copy(b[136:148], fmt.Sprintf("%011o\x00", epoch.Unix()))
	b[156] = typ
	copy(b[257:265], "ustar\x0000")
	if patch != nil {
		patch(b)
	}
	copy(b[148:156], "        ")
	var sum int64
	for _, c := range b {
		sum += int64(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

// pad rounds data up to whole blocks.
func pad(data []byte) []byte {
	if n := len(data) % 512; n != 0 {
		data = append(data, make([]byte, 512-n)...)
	}
	return data
}

// paxRecords encodes PAX records ("%d key=value\n") in the given order.
func paxRecords(kv ...string) []byte {
	var b bytes.Buffer
	for i := 0; i+1 < len(kv); i += 2 {
		rec := " " + kv[i] + "=" + kv[i+1] + "\n"
		n := len(rec)
		for {
			l := len(strconv.Itoa(n + len(strconv.Itoa(n))))
			if l == len(strconv.Itoa(n+l)) {
				n += l
				break
			}
			n++
		}
		fmt.Fprintf(&b, "%d%s", n, rec)
	}
	return b.Bytes()
}

// rawTar joins raw parts and adds the end-of-archive blocks.
func rawTar(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, pad(p)...)
	}
	return append(b, make([]byte, 1024)...)
}

// snapshot describes every entry below dir: type, mode, owner, size,
// link count, times and a hash of the data or link target. Two equal
// snapshots mean nothing in dir was changed, added, removed or linked to.
func snapshot(t testing.TB, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		var sum string
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum = fmt.Sprintf("%x", sha256.Sum256(b))
		case unix.S_IFLNK:
			sum, _ = os.Readlink(p)
		}
		mtime := st.Mtim.Nano()
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			mtime = 0 // reading does not change it, but keep the oracle about contents
		}
		lines = append(lines, fmt.Sprintf("%s %o %d:%d %d nlink=%d mtime=%d %s", rel, st.Mode, st.Uid, st.Gid, st.Size, st.Nlink, mtime, sum))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// mustRead returns the contents of root/name, failing the test if it
// cannot be read.
func mustRead(t testing.TB, root, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatalf("reading %s: %v", name, err)
	}
	return string(b)
}

func lstatT(t testing.TB, root, name string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, name), &st); err != nil {
		t.Fatalf("lstat %s: %v", name, err)
	}
	return st
}

func absent(t testing.TB, root, name string) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(root, name)); err == nil {
		t.Errorf("%s exists, want it absent", name)
	} else if !os.IsNotExist(err) {
		t.Errorf("lstat %s: %v", name, err)
	}
}
