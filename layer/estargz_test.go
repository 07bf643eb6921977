package layer

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	digest "github.com/opencontainers/go-digest"
)

// estargzTarEntry is one entry of a generated tar.
type estargzTarEntry struct {
	hdr  tar.Header
	body []byte
}

// estargzTestTar is a tar with every shape the estargz splitter must cut
// as the library does: files bigger than a chunk (with and without a
// remainder), of exactly one and two chunks, empty files, one-byte
// files, hard links, symlinks, long names and link names (PAX), xattrs,
// user and group names that change and repeat, devices and fifos, and a
// run of headers longer than maxMember (the streamed-member path).
// chunk is the chunk size the sizes are relative to.
func estargzTestTar(t *testing.T, chunk, maxMember int) ([]byte, []estargzTarEntry) {
	t.Helper()
	rng := rand.New(rand.NewSource(99))
	words := []string{"estargz ", "chunk ", "member ", "gzip ", "\n", "toc "}
	data := func(n int) []byte {
		b := make([]byte, 0, n+16)
		for len(b) < n {
			if rng.Intn(8) == 0 {
				b = append(b, byte(rng.Intn(256)))
			} else {
				b = append(b, words[rng.Intn(len(words))]...)
			}
		}
		return b[:n]
	}
	mtime := time.Unix(1700000000, 0)
	long := strings.Repeat("long-directory-name/", 8)
	reg := func(name string, size int, uid int, uname string) estargzTarEntry {
		return estargzTarEntry{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(size),
			Uid: uid, Gid: uid, Uname: uname, Gname: uname, ModTime: mtime, Format: tar.FormatPAX}, data(size)}
	}
	var es []estargzTarEntry
	add := func(e ...estargzTarEntry) { es = append(es, e...) }
	add(estargzTarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "d/", Mode: 0o755, ModTime: mtime}})
	add(reg("d/empty-first", 0, 0, "root"))
	add(reg("d/big", 2*chunk+12345, 0, "root"))
	add(reg("d/exact", chunk, 1000, "user"))
	add(reg("d/exact2", 2*chunk, 1000, "user"))
	add(reg("d/one-less", chunk-1, 1000, "other")) // a uid whose name changes
	add(reg("d/one-more", chunk+1, 0, "root"))
	add(reg("d/byte", 1, 7, ""))
	add(reg("d/empty", 0, 7, "seven"))
	add(estargzTarEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "d/hard", Linkname: "d/big", ModTime: mtime}})
	add(estargzTarEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "d/sym", Linkname: "../" + long + "target", Mode: 0o777, ModTime: mtime}})
	x := reg(long+"with-xattrs", 3000, 0, "root")
	x.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.one": "1", "SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"}
	add(x)
	add(estargzTarEntry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "d/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: mtime}})
	add(estargzTarEntry{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "d/loop", Mode: 0o660, Devmajor: 7, Devminor: 0, ModTime: mtime}})
	add(estargzTarEntry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "d/fifo", Mode: 0o600, ModTime: mtime}})
	add(estargzTarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "epoch/", Mode: 0o755, ModTime: time.Unix(0, 0)}})
	// Headers only, more bytes of them than a member may hold.
	for i := 0; i*1536 < 2*maxMember; i++ {
		add(estargzTarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: fmt.Sprintf("%sdirs/%06d/", long, i), Mode: 0o755, ModTime: mtime}})
	}
	add(reg("z/after-the-run", 5000, 0, "root"))
	for i := range 50 {
		add(reg(fmt.Sprintf("z/small-%02d", i), rng.Intn(3000), 0, "root"))
	}
	add(reg("z/last-big", chunk+chunk/2, 0, "root"))
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range es {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), es
}

// libraryEstargz is what the library's Writer makes of tarball.
func libraryEstargz(t *testing.T, tarball []byte, level, chunk int) (blob []byte, toc digest.Digest, diffID string) {
	t.Helper()
	var b bytes.Buffer
	w := estargz.NewWriterWithCompressor(&b, &estargzCompressor{level: level})
	w.ChunkSize = chunk
	w.MinChunkSize = 0
	if err := w.AppendTarLossLess(bytes.NewReader(tarball)); err != nil {
		t.Fatal(err)
	}
	toc, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), toc, w.DiffID()
}

// TestEstargzMatchesLibrary: our parallel writer makes the library
// Writer's bytes, TOC digest and diffID, whatever the level, the chunk
// size, the member bound and the number of workers; the library's
// reader opens the blob, verifies the TOC and every chunk and reads
// every file back.
func TestEstargzMatchesLibrary(t *testing.T) {
	for _, tc := range []struct {
		name              string
		chunk, maxMember  int
		levels, workerses []int
	}{
		// The production sizes: chunks of 4 MiB, members streamed past 5.
		{"production-sizes", estargzChunkSize, estargzMaxMember, []int{DefaultGzipLevel}, []int{1, 2, 4}},
		// Small sizes, so that every path is taken many times cheaply.
		{"small-chunks", 4096, 6000, []int{-2, 0, 1, DefaultGzipLevel, 9}, []int{1, 3}},
		{"odd-chunks", 1000, 1 << 20, []int{DefaultGzipLevel}, []int{2}},
	} {
		tarball, entries := estargzTestTar(t, tc.chunk, tc.maxMember)
		for _, level := range tc.levels {
			want, wantTOC, wantDiffID := libraryEstargz(t, tarball, level, tc.chunk)
			for _, workers := range tc.workerses {
				t.Run(fmt.Sprintf("%s/level-%d/workers-%d", tc.name, level, workers), func(t *testing.T) {
					var got bytes.Buffer
					comp := &estargzCompressor{level: level}
					toc, diffID, err := writeEstargz(&got, bytes.NewReader(tarball), comp, estargzParams{tc.chunk, tc.maxMember, workers})
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got.Bytes(), want) {
						t.Fatalf("blob differs from the library Writer's (%d vs %d bytes, first difference at %d)",
							got.Len(), len(want), firstDifference(got.Bytes(), want))
					}
					if toc != wantTOC {
						t.Errorf("TOC digest %s, library %s", toc, wantTOC)
					}
					if diffID.String() != wantDiffID {
						t.Errorf("diffID %s, library %s", diffID, wantDiffID)
					}
					if want := int64(len(tarball)) + comp.tocTar; estargzStreamLen(t, got.Bytes()) != want {
						t.Errorf("decompressed stream is not tar + TOC entry (%d bytes)", want)
					}
					checkEstargzBlob(t, got.Bytes(), toc, entries, tc.chunk)
				})
			}
		}
	}
}

func firstDifference(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// estargzStreamLen is the length of the blob decompressed.
func estargzStreamLen(t *testing.T, blob []byte) int64 {
	t.Helper()
	d, err := Estargz.decompressor(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	n, err := io.Copy(io.Discard, d)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// checkEstargzBlob opens blob with the library's reader, verifies the
// TOC against toc and reads every regular file back chunk by chunk.
func checkEstargzBlob(t *testing.T, blob []byte, toc digest.Digest, entries []estargzTarEntry, chunk int) {
	t.Helper()
	r, err := estargz.Open(io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob))))
	if err != nil {
		t.Fatalf("estargz.Open: %v", err)
	}
	v, err := r.VerifyTOC(toc)
	if err != nil {
		t.Fatalf("VerifyTOC: %v", err)
	}
	for _, e := range entries {
		if e.hdr.Typeflag != tar.TypeReg {
			if _, ok := r.Lookup(strings.TrimSuffix(e.hdr.Name, "/")); !ok {
				t.Errorf("%s not in the TOC", e.hdr.Name)
			}
			continue
		}
		if len(e.body) == 0 {
			continue
		}
		sr, err := r.OpenFile(e.hdr.Name)
		if err != nil {
			t.Fatalf("%s: %v", e.hdr.Name, err)
		}
		got := make([]byte, 0, len(e.body))
		chunks := 0
		for off := int64(0); off < int64(len(e.body)); chunks++ {
			ce, ok := r.ChunkEntryForOffset(e.hdr.Name, off)
			if !ok {
				t.Fatalf("%s: no chunk at %d", e.hdr.Name, off)
			}
			b := make([]byte, ce.ChunkSize)
			if _, err := sr.ReadAt(b, ce.ChunkOffset); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			dv, err := v.Verifier(ce)
			if err != nil {
				t.Fatal(err)
			}
			dv.Write(b)
			if !dv.Verified() {
				t.Fatalf("%s: chunk at %d does not verify", e.hdr.Name, off)
			}
			got = append(got, b...)
			off += ce.ChunkSize
		}
		if !bytes.Equal(got, e.body) {
			t.Fatalf("%s: content differs", e.hdr.Name)
		}
		if want := (len(e.body) + chunk - 1) / chunk; chunks != want {
			t.Errorf("%s: %d chunks, want %d", e.hdr.Name, chunks, want)
		}
	}
}

// failingWriter fails once n bytes are written.
type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		return 0, fmt.Errorf("disk full")
	}
	w.n -= len(p)
	return len(p), nil
}

// TestEstargzWriterFails: bad input or a failing destination is an
// error, and every goroutine of the pipeline stops (a hang fails the
// test by its timeout).
func TestEstargzWriterFails(t *testing.T) {
	tarball, _ := estargzTestTar(t, 4096, 6000)
	// Members larger than the writer's buffer, so that the destination
	// fails while members are still in flight.
	bigger, _ := estargzTestTar(t, 1<<16, 100000)
	var reserved bytes.Buffer
	tw := tar.NewWriter(&reserved)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "./" + estargz.TOCTarName, Size: 2})
	tw.Write([]byte("{}"))
	tw.Close()
	for _, tc := range []struct {
		name string
		in   []byte
		dst  io.Writer
		want string
	}{
		{"reserved-name", reserved.Bytes(), io.Discard, "reserves"},
		// (tar-split reads a tar cut between entries as ended, as the library
		// does; a cut inside a chunk is an error.)
		{"truncated-chunk", tarball[:5000], io.Discard, "unexpected EOF"},
		{"not-a-tar", bytes.Repeat([]byte("x"), 2048), io.Discard, "reading tar"},
		{"gzip-input", []byte{0x1f, 0x8b, 8, 0, 0, 0}, io.Discard, "gzip header"},
		{"destination-fails-early", tarball, &failingWriter{n: 1000}, "disk full"},
		{"destination-fails-midway", bigger, &failingWriter{n: 100000}, "disk full"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := estargzParams{4096, 6000, 2}
			if len(tc.in) > 1<<20 {
				p = estargzParams{1 << 16, 100000, 2}
			}
			_, _, err := writeEstargz(tc.dst, bytes.NewReader(tc.in), &estargzCompressor{level: 6}, p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}
