package layer

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/zstd"

	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/internal/verify"
)

// fixedSource emits a fixed change set whose tar does not depend on who
// runs the test: owners, modes and times are given, only the contents
// come from files.
type fixedSource struct{ dir string }

func newFixedSource(t *testing.T) fixedSource {
	t.Helper()
	dir := t.TempDir()
	rng := rand.New(rand.NewSource(42))
	// 3 MiB of text-like data: compressible, and more than two pgzip blocks.
	words := []string{"layer ", "commit ", "overlay ", "upper ", "digest ", "\n", "0123 ", "tar "}
	var b []byte
	for len(b) < 3<<20 {
		b = append(b, words[rng.Intn(len(words))]...)
	}
	if err := os.WriteFile(filepath.Join(dir, "big"), b[:3<<20], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "small"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return fixedSource{dir}
}

func (s fixedSource) Changes(ctx context.Context, fn diff.ChangeFunc) error {
	const mtime = 1700000000
	for _, c := range []diff.Change{
		{Kind: diff.Add, Path: "app", Info: diff.Info{Mode: 0o40755, Mtime: mtime}},
		{Kind: diff.Add, Path: "app/big", Source: filepath.Join(s.dir, "big"), Info: diff.Info{Mode: 0o100644, Size: 3 << 20, Mtime: mtime}},
		{Kind: diff.Add, Path: "app/small", Source: filepath.Join(s.dir, "small"), Info: diff.Info{Mode: 0o100600, Uid: 1000, Gid: 1000, Size: 6, Mtime: mtime}},
	} {
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}

// The pinned compressors must keep giving these digests for the fixed
// tar: a change here changes every layer digest users have pushed.
const (
	goldenDiffID = "sha256:12befa445d70ac994e11d5c24a4e1d43d430bbbab307b3ffe5b048db4b9f3057"
	goldenGzip   = "sha256:af93d508ad057660c5fef75aaa3ce0b2e3aed5e892a063cb84965dda3ccb8bd1"
	goldenZstd   = "sha256:d27152aef00898de62cca3fce6a0484451775a868311d8ca0fd657ed397b8e23"
	// containerd's gzip: compress/gzip at its default level.
	goldenGzipStdlib = "sha256:f2a3b5bf678a82e34b84182f72c6525e21ef3917ef3d7907deca4b26dfaa3d24"
)

func TestGoldenDigests(t *testing.T) {
	src := newFixedSource(t)
	procs := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(procs)
	for _, tc := range []struct {
		name    string
		c       Compression
		procs   int
		want    string
		profile compat.Profile
	}{
		{"gzip-1-core", Gzip, 1, goldenGzip, compat.Default},
		{"gzip-4-cores", Gzip, 4, goldenGzip, compat.Default},
		{"zstd-1-core", Zstd, 1, goldenZstd, compat.Default},
		{"zstd-4-cores", Zstd, 4, goldenZstd, compat.Default},
		{"none", None, 2, goldenDiffID, compat.Default},
		// containerd's compress/gzip (the same tar: the fixed source
		// has no whiteout and no capability).
		{"gzip-containerd-1-core", Gzip, 1, goldenGzipStdlib, compat.Containerd},
		{"gzip-containerd-4-cores", Gzip, 4, goldenGzipStdlib, compat.Containerd},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runtime.GOMAXPROCS(tc.procs)
			l, err := Write(context.Background(), t.TempDir(), src, WithCompression(tc.c, nil), WithDiffOptions(diff.WithCompat(tc.profile)))
			if err != nil {
				t.Fatal(err)
			}
			if got := l.diffID.String(); got != goldenDiffID {
				t.Errorf("diffID = %s, want %s", got, goldenDiffID)
			}
			if got := l.digest.String(); got != tc.want {
				t.Errorf("%s digest = %s, want %s", tc.c, got, tc.want)
			}
			checkReadBack(t, l)
			if tc.profile.StdlibGzip {
				// The blob is gzip.NewWriter's stream of the tar.
				rc, err := l.Uncompressed()
				if err != nil {
					t.Fatal(err)
				}
				h := sha256.New()
				zw := gzip.NewWriter(h)
				_, err = io.Copy(zw, rc)
				rc.Close()
				if err != nil || zw.Close() != nil {
					t.Fatal(err)
				}
				if got := fmt.Sprintf("sha256:%x", h.Sum(nil)); got != l.digest.String() {
					t.Errorf("blob %s is not compress/gzip's %s", l.digest, got)
				}
			}
		})
	}
}

// checkReadBack reads the layer both ways and checks sizes and digests.
func checkReadBack(t *testing.T, l *Layer) {
	t.Helper()
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil || n != l.size {
		t.Fatalf("reading compressed: %d bytes, %v (want %d)", n, err, l.size)
	}
	rc, err = l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	n, err = io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil || n != l.tarSize {
		t.Fatalf("reading uncompressed: %d bytes, %v (want %d)", n, err, l.tarSize)
	}
	if fi, err := os.Stat(l.Path()); err != nil || fi.Size() != l.size || filepath.Base(l.Path()) != l.digest.Hex {
		t.Fatalf("blob file %s: %v, %v", l.Path(), fi, err)
	}
}

func TestCorruptBlobFailsClosed(t *testing.T) {
	dir := t.TempDir()
	l, err := Write(context.Background(), dir, newFixedSource(t))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(l.Path(), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xff, 0xff}, l.size/2)
	f.Close()
	rc, _ := l.Compressed()
	_, err = io.Copy(io.Discard, rc)
	rc.Close()
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("reading a corrupted blob: %v, want ErrDigestMismatch", err)
	}
	os.Truncate(l.Path(), l.size-10)
	rc, _ = l.Compressed()
	_, err = io.Copy(io.Discard, rc)
	rc.Close()
	if !errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("reading a truncated blob: %v, want ErrSizeMismatch", err)
	}
}

func TestSameBlobTwiceKeepsOne(t *testing.T) {
	dir := t.TempDir()
	src := newFixedSource(t)
	a, err := Write(context.Background(), dir, src)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Write(context.Background(), dir, src)
	if err != nil {
		t.Fatal(err)
	}
	if a.digest != b.digest || !a.Created() || b.Created() {
		t.Fatalf("second write: digest %s vs %s, created %v %v", a.digest, b.digest, a.Created(), b.Created())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("dir holds %d entries, want only the blob", len(ents))
	}
}

func TestWriteErrorLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	bad := diff.Naive(filepath.Join(dir, "missing-lower"), filepath.Join(dir, "missing"), nil)
	if _, err := Write(context.Background(), dir, bad); err == nil {
		t.Fatal("writing a missing source succeeded")
	}
	if lvl := 42; true {
		if _, err := Write(context.Background(), dir, newFixedSource(t), WithCompression(Gzip, &lvl)); err == nil {
			t.Fatal("gzip level 42 accepted")
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Fatalf("dir holds %d entries after failed writes", len(ents))
	}
}

// TestFromFile reopens a written blob from its descriptor, reads it twice
// (a layer is a value) and refuses a file that is not the blob.
func TestFromFile(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []Compression{Gzip, Zstd, None} {
		t.Run(string(c), func(t *testing.T) {
			w, err := Write(context.Background(), dir, newFixedSource(t), WithCompression(c, nil))
			if err != nil {
				t.Fatal(err)
			}
			l, err := FromFile(w.Path(), w.Descriptor())
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 2; i++ {
				rc, err := l.Uncompressed()
				if err != nil {
					t.Fatal(err)
				}
				n, err := io.Copy(io.Discard, rc)
				rc.Close()
				if err != nil || n != w.UncompressedSize() {
					t.Fatalf("read %d: %d bytes, %v", i, n, err)
				}
			}
			if err := l.Remove(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(w.Path()); err != nil {
				t.Fatalf("Remove of a FromFile layer removed the store's file: %v", err)
			}
			d := w.Descriptor()
			d.DiffID.Hex = "00000000000000000000000000000000000000000000000000000000000000ff" // fails at the end of the tar
			d.UncompressedSize = 0
			bad, err := FromFile(w.Path(), d)
			if err != nil {
				t.Fatal(err)
			}
			rc, _ := bad.Uncompressed()
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
			if !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("wrong diffID: %v, want ErrDigestMismatch", err)
			}
			d = w.Descriptor()
			d.Size++
			if _, err := FromFile(w.Path(), d); !errors.Is(err, ErrSizeMismatch) {
				t.Fatalf("wrong size: %v, want ErrSizeMismatch", err)
			}
		})
	}
}

// goldenZstdLong is the pinned zstd compressor's digest of longStream:
// longer than a concurrent-blocks job (4 windows, 32 MiB at level 3),
// so that turning concurrent blocks on, or letting the encoder's bytes
// depend on its goroutine count, changes it.
const goldenZstdLong = "sha256:c6bdb261568a18b145e2ba1a638e8301ab3cd977020dab5cee036dde6ae1bda9"

// longStream is 40 MiB of text-like bytes, the same on every run.
func longStream() []byte {
	rng := rand.New(rand.NewSource(7))
	words := []string{"layer ", "commit ", "overlay ", "upper ", "digest ", "\n", "0123 ", "tar ", "whiteout ", "opaque "}
	b := make([]byte, 0, 40<<20+16)
	for len(b) < 40<<20 {
		b = append(b, words[rng.Intn(len(words))]...)
		if rng.Intn(64) == 0 { // some incompressible runs
			for range 200 {
				b = append(b, byte(rng.Intn(256)))
			}
		}
	}
	return b[:40<<20]
}

func TestZstdLongStream(t *testing.T) {
	in := longStream()
	compress := func(t *testing.T, procs int) string {
		t.Helper()
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		h := sha256.New()
		zw, err := Zstd.compressor(h, DefaultZstdLevel, compat.Default)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := zw.Write(in); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("sha256:%x", h.Sum(nil))
	}
	for _, procs := range []int{1, 4} {
		t.Run(fmt.Sprintf("%d-cores", procs), func(t *testing.T) {
			if got := compress(t, procs); got != goldenZstdLong {
				t.Errorf("zstd digest of the 40 MiB stream = %s, want %s", got, goldenZstdLong)
			}
		})
	}
	// The goroutine count is pinned, but the bytes must not depend on it
	// either: a one-goroutine encoder with the other settings gives them.
	t.Run("one-goroutine-encoder", func(t *testing.T) {
		h := sha256.New()
		zw, err := zstd.NewWriter(h, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(DefaultZstdLevel)),
			zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(true))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := zw.Write(in); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("sha256:%x", h.Sum(nil)); got != goldenZstdLong {
			t.Errorf("one-goroutine encoder gives %s, want %s", got, goldenZstdLong)
		}
	})
}

// wrongDiffID is a layer that claims another diffID.
type wrongDiffID struct{ *Layer }

func (wrongDiffID) DiffID() (v1.Hash, error) {
	return v1.NewHash("sha256:" + fmt.Sprintf("%064d", 0))
}

// TestCompress: a layer kept uncompressed and compressed later is the
// blob a compressed Write of the same change set gives (golden digests,
// both compressors, both profiles); a tar that does not hash to the
// layer's diffID is refused and leaves nothing; the seekable formats are
// refused.
func TestCompress(t *testing.T) {
	ctx := context.Background()
	src := newFixedSource(t)
	for _, tc := range []struct {
		name string
		opts []Option
		want string
	}{
		{"gzip", nil, goldenGzip},
		{"zstd", []Option{WithCompression(Zstd, nil)}, goldenZstd},
		{"containerd's gzip", []Option{WithDiffOptions(diff.WithCompat(compat.Containerd))}, goldenGzipStdlib},
		{"none", []Option{WithCompression(None, nil)}, goldenDiffID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			plain, err := Write(ctx, dir, src, WithCompression(None, nil))
			if err != nil {
				t.Fatal(err)
			}
			l, err := Compress(ctx, dir, plain, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if d, _ := l.Digest(); d.String() != tc.want {
				t.Errorf("digest %s, want %s", d, tc.want)
			}
			if d, _ := l.DiffID(); d.String() != goldenDiffID {
				t.Errorf("diffID %s, want %s", d, goldenDiffID)
			}
			checkReadBack(t, l)
		})
	}
	t.Run("a lying layer", func(t *testing.T) {
		dir, out := t.TempDir(), t.TempDir()
		plain, err := Write(ctx, dir, src, WithCompression(None, nil))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Compress(ctx, out, wrongDiffID{plain}); !errors.Is(err, verify.ErrDigestMismatch) {
			t.Fatalf("err %v, want ErrDigestMismatch", err)
		}
		if _, err := Compress(ctx, out, plain, WithCompression(Estargz, nil)); err == nil {
			t.Fatal("estargz accepted")
		}
		if ents, _ := os.ReadDir(out); len(ents) != 0 {
			t.Fatalf("dir holds %d entries after failed compressions", len(ents))
		}
	})
}
