package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/storage/pkg/chunked/compressor"
	"go.podman.io/storage/pkg/chunked/toc"

	"github.com/layercommit/layercommit/diff"
)

// Golden digests of the fixed fixture (newFixedSource) for the seekable
// formats. estargz's diffID differs from the tar's (the TOC entry is in
// the stream); zstd:chunked's is the tar's.
const (
	goldenEstargz        = "sha256:92ed3786f3baae6458d2696b51b3168d6afc302af0e2afa8f296518531e20666"
	goldenEstargzDiffID  = "sha256:6a5988095b008d41576596e7662114f727b29910bde7ab6ea55ccba8f5c587d8"
	goldenEstargzTOC     = "sha256:09c39519aa1af6849e7f427bb5a8b767f754497218446eddb448750d6cc8def4"
	goldenZstdChunked    = "sha256:3eb7a5f881b038835e944c7b6ecac4612bc4ccc6bbc64b859cdab904536b95be"
	goldenZstdChunkedTOC = "sha256:3acae4d3ab9f4a09ba1952afde9468c1fe118aae5b6665fe67f2ba83adbeb0d9"
)

func TestSeekableGoldenDigests(t *testing.T) {
	src := newFixedSource(t)
	procs := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(procs)
	for _, tc := range []struct {
		name       string
		c          Compression
		procs      int
		want       string
		wantDiffID string
		tocKey     string
		wantTOC    string
	}{
		{"estargz-1-core", Estargz, 1, goldenEstargz, goldenEstargzDiffID, estargz.TOCJSONDigestAnnotation, goldenEstargzTOC},
		{"estargz-4-cores", Estargz, 4, goldenEstargz, goldenEstargzDiffID, estargz.TOCJSONDigestAnnotation, goldenEstargzTOC},
		{"zstd-chunked-1-core", ZstdChunked, 1, goldenZstdChunked, goldenDiffID, ZstdChunkedManifestChecksum, goldenZstdChunkedTOC},
		{"zstd-chunked-4-cores", ZstdChunked, 4, goldenZstdChunked, goldenDiffID, ZstdChunkedManifestChecksum, goldenZstdChunkedTOC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runtime.GOMAXPROCS(tc.procs)
			l, err := Write(context.Background(), t.TempDir(), src, WithCompression(tc.c, nil))
			if err != nil {
				t.Fatal(err)
			}
			if got := l.diffID.String(); got != tc.wantDiffID {
				t.Errorf("diffID = %s, want %s", got, tc.wantDiffID)
			}
			if got := l.digest.String(); got != tc.want {
				t.Errorf("%s digest = %s, want %s", tc.c, got, tc.want)
			}
			if got := l.Annotations()[tc.tocKey]; got != tc.wantTOC {
				t.Errorf("%s = %s, want %s", tc.tocKey, got, tc.wantTOC)
			}
			checkReadBack(t, l) // Uncompressed checks the diffID and size
			checkExtractsToTar(t, l, src)
		})
	}
}

// noneTar is the fixture's plain tar.
func noneTar(t *testing.T, src diff.Source) []byte {
	t.Helper()
	l, err := Write(context.Background(), t.TempDir(), src, WithCompression(None, nil))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(l.Path())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkExtractsToTar checks that the decompressed blob starts with our
// plain tar byte for byte and that a tar reader sees only our entries.
func checkExtractsToTar(t *testing.T, l *Layer, src diff.Source) {
	t.Helper()
	want := noneTar(t, src)
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(got, want) {
		t.Fatalf("decompressed %s blob does not start with the plain tar (%d vs %d bytes)", l.compression, len(got), len(want))
	}
	if l.compression == ZstdChunked && len(got) != len(want) {
		t.Errorf("zstd:chunked decompresses to %d bytes, the tar has %d", len(got), len(want))
	}
	tr := tar.NewReader(bytes.NewReader(got))
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	if s := strings.Join(names, ","); s != "app/,app/big,app/small" {
		t.Errorf("a tar reader sees %s", s)
	}
}

// TestEstargzVerifies opens our blob with the reference reader, verifies
// its TOC against the annotation and every chunk against the TOC, and
// reads every file back.
func TestEstargzVerifies(t *testing.T) {
	src := newFixedSource(t)
	for _, tc := range []struct {
		name  string
		level int
	}{{"default-level", DefaultGzipLevel}, {"level-1", 1}, {"level-9", 9}} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := Write(context.Background(), t.TempDir(), src, WithCompression(Estargz, &tc.level))
			if err != nil {
				t.Fatal(err)
			}
			if mt, _ := l.MediaType(); mt != "application/vnd.oci.image.layer.v1.tar+gzip" {
				t.Errorf("media type %s", mt)
			}
			if got, want := l.Annotations()[estargz.StoreUncompressedSizeAnnotation], strconv.FormatInt(l.tarSize, 10); got != want {
				t.Errorf("uncompressed-size annotation %q, want %q", got, want)
			}
			f, err := os.Open(l.Path())
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r, err := estargz.Open(io.NewSectionReader(f, 0, l.size))
			if err != nil {
				t.Fatalf("estargz.Open: %v", err)
			}
			v, err := r.VerifyTOC(digest.Digest(l.Annotations()[estargz.TOCJSONDigestAnnotation]))
			if err != nil {
				t.Fatalf("VerifyTOC: %v", err)
			}
			if _, err := r.VerifyTOC(digest.FromString("other")); err == nil {
				t.Fatal("VerifyTOC accepted a wrong TOC digest")
			}
			for _, name := range []string{"app/big", "app/small"} {
				want, err := os.ReadFile(filepath.Join(src.dir, filepath.Base(name)))
				if err != nil {
					t.Fatal(err)
				}
				checkEstargzFile(t, r, v, name, want)
			}
		})
	}
}

// checkEstargzFile reads name chunk by chunk, verifying each chunk.
func checkEstargzFile(t *testing.T, r *estargz.Reader, v estargz.TOCEntryVerifier, name string, want []byte) {
	t.Helper()
	sr, err := r.OpenFile(name)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 0, len(want))
	chunks := 0
	for off := int64(0); off < int64(len(want)); {
		ce, ok := r.ChunkEntryForOffset(name, off)
		if !ok {
			t.Fatalf("%s: no chunk at %d", name, off)
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
			t.Fatalf("%s: chunk at %d does not verify", name, off)
		}
		got = append(got, b...)
		off += ce.ChunkSize
		chunks++
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: content differs", name)
	}
	if wantChunks := (len(want) + estargzChunkSize - 1) / estargzChunkSize; chunks != wantChunks {
		t.Errorf("%s: %d chunks, want %d", name, chunks, wantChunks)
	}
}

// smallSource is a change set of small files and every entry type
// zstd:chunked has, so that containers/storage's compressor (which
// splits large files at rolling-checksum boundaries, as ours does not)
// makes the same frames as ours.
type smallSource struct {
	dir string
	ino uint64 // of a, linked as hard
}

func (s smallSource) Changes(ctx context.Context, fn diff.ChangeFunc) error {
	const mtime = 1700000000
	for _, c := range []diff.Change{
		{Kind: diff.Add, Path: "etc", Info: diff.Info{Mode: 0o40755, Mtime: mtime}},
		{Kind: diff.Add, Path: "etc/a", Source: filepath.Join(s.dir, "a"), Info: diff.Info{Mode: 0o100644, Size: 3, Mtime: mtime, Ino: s.ino, Nlink: 2}},
		{Kind: diff.Add, Path: "etc/empty", Source: filepath.Join(s.dir, "empty"), Info: diff.Info{Mode: 0o100600, Uid: 7, Gid: 8, Mtime: mtime}},
		{Kind: diff.Add, Path: "etc/link", Link: "a", Info: diff.Info{Mode: 0o120777, Mtime: mtime}},
		{Kind: diff.Add, Path: "etc/hard", Source: filepath.Join(s.dir, "a"), Info: diff.Info{Mode: 0o100644, Size: 3, Mtime: mtime, Ino: s.ino, Nlink: 2}},
		{Kind: diff.Add, Path: "etc/fifo", Info: diff.Info{Mode: 0o10644, Mtime: mtime}},
		{Kind: diff.Add, Path: "etc/b", Source: filepath.Join(s.dir, "b"), Info: diff.Info{Mode: 0o100755, Size: 1000, Mtime: mtime},
			Capability: "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"},
		{Kind: diff.Delete, Path: "etc/gone"},
	} {
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}

func newSmallSource(t *testing.T) smallSource {
	dir := t.TempDir()
	for name, body := range map[string]string{"a": "aa\n", "empty": "", "b": strings.Repeat("0123456789", 100)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(dir, "a"), filepath.Join(dir, "hard")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	return smallSource{dir, fi.Sys().(*syscall.Stat_t).Ino}
}

// TestZstdChunkedMatchesContainersStorage runs containers/storage's own
// zstd:chunked compressor (what podman and buildah push) over the same
// tar and requires the same bytes and annotations, at every level tried.
func TestZstdChunkedMatchesContainersStorage(t *testing.T) {
	// containers/storage writes TOC times in the local zone; ours in UTC.
	local := time.Local
	time.Local = time.UTC
	defer func() { time.Local = local }()
	src := newSmallSource(t)
	plain := noneTar(t, src)
	for _, level := range []int{1, 3, 10} {
		t.Run(fmt.Sprintf("level-%d", level), func(t *testing.T) {
			l, err := Write(context.Background(), t.TempDir(), src, WithCompression(ZstdChunked, &level))
			if err != nil {
				t.Fatal(err)
			}
			ours, err := os.ReadFile(l.Path())
			if err != nil {
				t.Fatal(err)
			}
			var theirs bytes.Buffer
			meta := map[string]string{}
			w, err := compressor.ZstdCompressor(&theirs, meta, &level)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(plain); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours, theirs.Bytes()) {
				t.Errorf("blob differs from containers/storage's (%d vs %d bytes)", len(ours), theirs.Len())
			}
			for k, v := range meta {
				if l.Annotations()[k] != v {
					t.Errorf("annotation %s = %q, containers/storage %q", k, l.Annotations()[k], v)
				}
			}
			if len(meta) != len(l.Annotations()) {
				t.Errorf("annotations %v, containers/storage %v", l.Annotations(), meta)
			}
			if d, err := toc.GetTOCDigest(l.Annotations()); err != nil || d == nil || d.String() != l.Annotations()[ZstdChunkedManifestChecksum] {
				t.Errorf("containers/storage reads TOC digest %v, %v", d, err)
			}
			checkZstdChunkedTOC(t, ours, l.Annotations())
		})
	}
}

// checkZstdChunkedTOC finds the TOC and tar-split where the annotations
// say, checks the TOC digest and decompresses both.
func checkZstdChunkedTOC(t *testing.T, blob []byte, ann map[string]string) {
	t.Helper()
	for _, key := range []string{ZstdChunkedManifestPosition, ZstdChunkedTarSplitPosition} {
		var off, n, un int
		if _, err := fmt.Sscanf(ann[key], "%d:%d:%d", &off, &n, &un); err != nil {
			t.Fatalf("%s %q: %v", key, ann[key], err)
		}
		if off+n > len(blob) {
			t.Fatalf("%s points past the blob", key)
		}
		part := blob[off : off+n]
		if key == ZstdChunkedManifestPosition {
			if got := fmt.Sprintf("sha256:%x", sha256.Sum256(part)); got != ann[ZstdChunkedManifestChecksum] {
				t.Errorf("TOC digest %s, annotation %s", got, ann[ZstdChunkedManifestChecksum])
			}
		}
		d, err := zstd.NewReader(bytes.NewReader(part))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(d)
		d.Close()
		if err != nil || len(raw) != un {
			t.Errorf("%s: %d bytes, %v; want %d", key, len(raw), err, un)
		}
	}
}
