package layer

import (
	"fmt"
	"hash"
	"io"
	"strconv"

	"github.com/containerd/stargz-snapshotter/estargz"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
)

// The estargz layer is written by the reference library's streaming
// Writer in lossless mode (as BuildKit does), not by estargz.Build: Build
// needs the whole tar seekable and rewrites every header with Go's tar
// writer (and adds a landmark entry), which would undo the compat
// profile's header bytes. AppendTarLossLess keeps our tar byte for byte,
// starting one gzip member per regular file and per estargzChunkSize
// chunk, and Close appends the TOC (a tar entry named stargz.index.json
// in its own member) and the 51-byte footer member that points at it.
//
// The diffID cannot stay the tar's: the TOC entry is inside the gzip
// stream, after our end-of-archive blocks, so every puller that
// decompresses the blob (docker load, containerd, podman) hashes our
// tar + the TOC entry + a second end-of-archive. The layer's diffID is
// therefore that digest (the library's Writer.DiffID), and its
// uncompressed size grows by the TOC entry. Tar readers stop at our
// end-of-archive, so what is extracted is exactly our tar.

// estargzWriter feeds our tar to estargz.Writer on a goroutine.
type estargzWriter struct {
	*pipeCompressor
	w    *estargz.Writer
	comp *estargzCompressor
	toc  digest.Digest
}

func newEstargzWriter(dst io.Writer, level int) *estargzWriter {
	c := &estargzCompressor{level: level}
	ew := estargz.NewWriterWithCompressor(dst, c)
	ew.ChunkSize = estargzChunkSize
	ew.MinChunkSize = 0
	z := &estargzWriter{w: ew, comp: c}
	z.pipeCompressor = startPipe(func(r io.Reader) error {
		if err := ew.AppendTarLossLess(r); err != nil {
			return fmt.Errorf("writing estargz entries: %w", err)
		}
		d, err := ew.Close()
		if err != nil {
			return fmt.Errorf("writing estargz TOC: %w", err)
		}
		z.toc = d
		return nil
	})
	return z
}

// seal is valid after a successful Close.
func (z *estargzWriter) seal() sealed {
	d, err := v1.NewHash(z.w.DiffID())
	if err != nil {
		panic(fmt.Sprintf("estargz diffID %q: %v", z.w.DiffID(), err)) // the library always formats sha256:hex
	}
	return sealed{
		diffID:   &d,
		extraTar: z.comp.tocTar,
		annotations: map[string]string{
			estargz.TOCJSONDigestAnnotation: z.toc.String(),
			// The size of the whole decompressed stream, TOC entry
			// included (what the library's own converters record).
			estargz.StoreUncompressedSizeAnnotation: strconv.FormatInt(z.n+z.comp.tocTar, 10),
		},
	}
}

// estargzCompressor is the library's gzip Compressor with the file
// members written by klauspost's gzip (the deflate pgzip uses; about
// twice as fast as compress/gzip at the same level) and the TOC by the
// library itself. It counts the TOC entry's uncompressed bytes.
type estargzCompressor struct {
	level  int
	tocTar int64
}

func (c *estargzCompressor) Writer(w io.Writer) (estargz.WriteFlushCloser, error) {
	return gzip.NewWriterLevel(w, c.level)
}

func (c *estargzCompressor) WriteTOCAndFooter(w io.Writer, off int64, toc *estargz.JTOC, diffHash hash.Hash) (digest.Digest, error) {
	h := &countingHash{Hash: diffHash}
	d, err := estargz.NewGzipCompressorWithLevel(c.level).WriteTOCAndFooter(w, off, toc, h)
	c.tocTar = h.n
	return d, err
}

// countingHash counts the bytes hashed.
type countingHash struct {
	hash.Hash
	n int64
}

func (h *countingHash) Write(p []byte) (int, error) {
	h.n += int64(len(p))
	return h.Hash.Write(p)
}
