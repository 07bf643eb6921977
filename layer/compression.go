package layer

import (
	"compress/gzip"
	"fmt"
	"io"
	"runtime"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"

	"github.com/layercommit/layercommit/compat"
)

// Compression names how a layer blob is compressed.
type Compression string

const (
	Gzip Compression = "gzip"
	Zstd Compression = "zstd"
	None Compression = "none"
	// Estargz is gzip made seekable (estargz.go): one gzip member per
	// file or chunk and a table of contents at the end. Plain gzip to
	// every other reader.
	Estargz Compression = "estargz"
	// ZstdChunked is zstd made seekable (zstdchunked.go): one zstd frame
	// per file payload, the table of contents and the tar-split in
	// skippable frames. Plain zstd to every other reader.
	ZstdChunked Compression = "zstd:chunked"
)

// The pinned parameters. Changing any of them changes every blob digest;
// TestGoldenDigests guards them.
const (
	// DefaultGzipLevel is gzip's default level (6), the same value in
	// pgzip and compress/gzip.
	DefaultGzipLevel = pgzip.DefaultCompression
	// gzipBlockSize is the size of the blocks pgzip compresses in
	// parallel. Each block is compressed with the previous block's tail
	// as its dictionary, so the output depends on the block size but not
	// on how many blocks are in flight.
	gzipBlockSize = 1 << 20
	// DefaultZstdLevel is zstd's default level (3).
	DefaultZstdLevel = 3
	// zstdConcurrency is the zstd encoder's goroutine count. Without
	// concurrent blocks (below) the stream is encoded one block at a
	// time and any count above 1 only lets the next block fill while one
	// is encoded: the bytes are those of a count of 1 (measured with 1, 2
	// and 4). It is pinned all the same, never taken from the core count.
	//
	// Concurrent blocks (WithConcurrentBlocks) are off, deliberately:
	// they cut the stream into jobs of 4 windows (32 MiB at level 3)
	// and keep about 3 jobs per goroutine in flight, input and output,
	// which made a commit of the 929 MB bench tree peak at 455 MiB RSS
	// with 4 goroutines. Measured on that data (1.2 GB of /usr/local/go
	// and /usr/lib, 2 cores): concurrent blocks with 4 goroutines 5.6 s,
	// 510 MiB, ratio 0.3276; plain stream with 2 goroutines 5.0 s,
	// 36 MiB, ratio 0.3200 (the jobs' restarts also cost ratio). The
	// encoder runs at about 240 MB/s there, far above what a commit
	// feeds it, so one core is enough.
	zstdConcurrency = 2
	// estargzChunkSize is the largest piece of a regular file that one
	// estargz gzip member holds (the library's default, pinned here).
	// Every file starts a new member whatever its size (MinChunkSize 0).
	estargzChunkSize = 4 << 20
)

// ParseCompression reads the --compression spelling.
func ParseCompression(s string) (Compression, error) {
	switch c := Compression(s); c {
	case Gzip, Zstd, None, Estargz, ZstdChunked:
		return c, nil
	case "":
		return Gzip, nil
	}
	return "", fmt.Errorf("unknown compression %q (gzip, zstd, zstd:chunked, estargz or none)", s)
}

// DefaultLevel is the level used when none is given.
func (c Compression) DefaultLevel() int {
	switch c {
	case Gzip, Estargz:
		return DefaultGzipLevel
	case Zstd, ZstdChunked:
		return DefaultZstdLevel
	}
	return 0
}

// NeedsOCI reports whether c has no Docker v2 schema 2 media type (or,
// for the seekable formats, needs the OCI manifest's layer annotations),
// so that an image of a c layer must be OCI.
func (c Compression) NeedsOCI() bool {
	return c == Zstd || c == Estargz || c == ZstdChunked
}

// checkLevel rejects a level the compressor does not have.
func (c Compression) checkLevel(level int) error {
	switch c {
	case Gzip, Estargz:
		if level < pgzip.HuffmanOnly || level > pgzip.BestCompression {
			return fmt.Errorf("gzip level %d out of range (-2..9)", level)
		}
	case Zstd, ZstdChunked:
		if level < 1 || level > 22 {
			return fmt.Errorf("zstd level %d out of range (1..22)", level)
		}
	case None:
		if level != 0 {
			return fmt.Errorf("compression none takes no level (got %d)", level)
		}
	default:
		return fmt.Errorf("unknown compression %q", c)
	}
	return nil
}

// MediaType is the layer media type of c in the OCI family or, when
// docker is set, the Docker v2 schema 2 family. Docker's family has no
// zstd type; the caller must refuse that pair.
func (c Compression) MediaType(docker bool) (types.MediaType, error) {
	switch {
	case c == Gzip && docker:
		return types.DockerLayer, nil
	case c == Gzip:
		return types.OCILayer, nil
	case c == None && docker:
		return types.DockerUncompressedLayer, nil
	case c == None:
		return types.OCIUncompressedLayer, nil
	case c == Zstd && docker:
		return "", fmt.Errorf("zstd layers need an OCI image; the base image uses Docker v2 schema 2 media types")
	case c == Zstd:
		return types.OCILayerZStd, nil
	case (c == Estargz || c == ZstdChunked) && docker:
		return "", fmt.Errorf("%s layers need an OCI image (their annotations live in the OCI manifest); the base image uses Docker v2 schema 2 media types", c)
	case c == Estargz:
		// A gzip stream to every reader; the annotations say it is more.
		return types.OCILayer, nil
	case c == ZstdChunked:
		return types.OCILayerZStd, nil
	}
	return "", fmt.Errorf("unknown compression %q", c)
}

// nopCloser turns a writer into a WriteCloser whose Close does nothing.
type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// compressor wraps w in the pinned compressor of the profile p. Closing
// it finishes the stream (it never Flushes midway) and does not close w.
// The seekable formats also implement sealer.
func (c Compression) compressor(w io.Writer, level int, p compat.Profile) (io.WriteCloser, error) {
	switch c {
	case Gzip:
		if p.StdlibGzip {
			// containerd's pkg/archive/compression.CompressStream:
			// gzip.NewWriter, one goroutine, no header fields (at
			// DefaultGzipLevel, which is compress/gzip's default).
			return gzip.NewWriterLevel(w, level)
		}
		z, err := pgzip.NewWriterLevel(w, level)
		if err != nil {
			return nil, err
		}
		if err := z.SetConcurrency(gzipBlockSize, runtime.GOMAXPROCS(0)); err != nil {
			return nil, err
		}
		return z, nil
	case Estargz:
		return newEstargzWriter(w, level), nil
	case ZstdChunked:
		return newZstdChunkedWriter(w, level), nil
	case Zstd:
		return zstd.NewWriter(w,
			zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
			zstd.WithEncoderConcurrency(zstdConcurrency),
			zstd.WithConcurrentBlocks(false),
			zstd.WithEncoderCRC(true))
	case None:
		return nopCloser{w}, nil
	}
	return nil, fmt.Errorf("unknown compression %q", c)
}

// decompressor reads what compressor wrote. The caller closes it.
func (c Compression) decompressor(r io.Reader) (io.ReadCloser, error) {
	switch c {
	case Gzip, Estargz:
		return pgzip.NewReader(r)
	case Zstd, ZstdChunked: // the decoder skips skippable frames
		d, err := zstd.NewReader(r)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case None:
		return io.NopCloser(r), nil
	}
	return nil, fmt.Errorf("unknown compression %q", c)
}
