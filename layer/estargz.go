package layer

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
	"github.com/vbatts/tar-split/archive/tar"
)

// The estargz layer has the bytes the reference library's streaming
// Writer writes in lossless mode (estargz.Writer.AppendTarLossLess, as
// BuildKit uses it) with our gzip compressor (estargzCompressor), at our
// chunk size: one gzip member per regular file and per estargzChunkSize
// chunk, the TOC (a tar entry named stargz.index.json in its own
// member) and the 51-byte footer member that points at it. Lossless
// keeps our tar byte for byte; estargz.Build would need the whole tar
// seekable and rewrite every header with Go's tar writer.
//
// Own code, for speed: the library compresses every member on the
// calling goroutine, one after the other, and allocates a new gzip
// writer per member, which made estargz 1.6 times as slow as pgzip's
// gzip on two cores. writeEstargz cuts the stream into the same members
// the library would (the same tar reader, the same calls in the same
// order, so the same raw header bytes and the same boundaries), has
// them compressed by a few workers, each gzip member exactly as the
// library makes it (a fresh writer at the level, the member's bytes,
// Flush if another member follows, Close), and writes them in order,
// filling in the TOC offsets as it goes. The TOC and the footer are
// written by the library's own compressor. TestEstargzMatchesLibrary
// compares our blobs with the library Writer's, byte for byte, at
// several levels, chunk sizes and worker counts. Memory is bounded:
// workers+1 input buffers of a chunk and 64 KiB, and the compressed
// members between the workers and the writer (at most workers+2).
// Whatever the worker count, the bytes are the same.
//
// The diffID cannot stay the tar's: the TOC entry is inside the gzip
// stream, after our end-of-archive blocks, so every puller that
// decompresses the blob (docker load, containerd, podman) hashes our
// tar + the TOC entry + a second end-of-archive. The layer's diffID is
// therefore that digest, and its uncompressed size grows by the TOC
// entry. Tar readers stop at our end-of-archive, so what is extracted
// is exactly our tar.

// estargzWriter feeds our tar to writeEstargz on a goroutine.
type estargzWriter struct {
	*pipeCompressor
	comp   *estargzCompressor
	diffID v1.Hash
	toc    digest.Digest
}

func newEstargzWriter(dst io.Writer, level int) *estargzWriter {
	z := &estargzWriter{comp: &estargzCompressor{level: level}}
	z.pipeCompressor = startPipe(func(r io.Reader) error {
		toc, diffID, err := writeEstargz(dst, r, z.comp, estargzParams{estargzChunkSize, estargzMaxMember, estargzWorkers()})
		if err != nil {
			return err
		}
		z.toc, z.diffID = toc, diffID
		return nil
	})
	return z
}

// estargzWorkers is how many members are compressed at once. It does
// not change a byte, only speed and memory.
func estargzWorkers() int { return min(max(runtime.GOMAXPROCS(0), 1), 4) }

// seal is valid after a successful Close.
func (z *estargzWriter) seal() sealed {
	return sealed{
		diffID:   &z.diffID,
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

// estargzMember is one gzip member: its uncompressed bytes, and what the
// writer fills in when it knows where the member starts.
type estargzMember struct {
	buf *bytes.Buffer // uncompressed, never grown past its capacity
	out *bytes.Buffer // compressed, by a worker
	// flush: another member follows, so the library Flushed this one
	// before closing it (a sync marker in the stream).
	flush bool
	// chunk is the TOC entry of the file chunk the member starts with
	// (nil for the first member, which starts with a header); its
	// Offset is the member's, and chunkLen bytes of buf are its data.
	chunk    *estargz.TOCEntry
	chunkLen int
	// file: chunk is the file's only chunk, so its digest is the file's.
	file bool

	// stream is set when the member outgrew its buffer: the rest
	// of its bytes come through it, and the writer compresses them in
	// order rather than a worker (memory stays bounded whatever runs of
	// headers the tar has). Closed when the member ends.
	stream chan []byte

	err  error
	done chan struct{}
}

// estargzMaxMember is the capacity of a member's input buffer: a whole
// chunk and the headers after it (a member is streamed past it). Input
// buffers are never grown, and there are at most workers+1 of them: the
// one being filled and those being compressed (a worker returns its
// buffer as soon as the member is compressed).
const estargzMaxMember = estargzChunkSize + 64<<10

// estargzBuffers is the bounded free list of input buffers, made as
// needed up to max. Only the splitter takes.
type estargzBuffers struct {
	free      chan *bytes.Buffer
	made, max int
	size      int
	quit      <-chan struct{}
}

func (b *estargzBuffers) get() (*bytes.Buffer, error) {
	select {
	case p := <-b.free:
		return p, nil
	default:
	}
	if b.made < b.max {
		b.made++
		return bytes.NewBuffer(make([]byte, 0, b.size)), nil
	}
	select {
	case p := <-b.free:
		return p, nil
	case <-b.quit:
		return nil, errEstargzAborted
	}
}

// put returns an input buffer; it never blocks (free holds max).
func (b *estargzBuffers) put(buf *bytes.Buffer) {
	buf.Reset()
	b.free <- buf
}

// estargzOut holds compressed members until the writer has written
// them: at most as many as there are members in flight (ordered's, the
// writer's, the workers'). Each grows to what its members need; most
// are small files, and a chunk compresses to a fraction of itself.
var estargzOut = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// estargzSplitter cuts the tar into members as the library's
// appendTar does, sending each to the writer (in order) and to the
// workers.
type estargzSplitter struct {
	ordered  chan<- *estargzMember
	work     chan<- *estargzMember
	diffHash hash.Hash
	cur      *estargzMember
	quit     <-chan struct{} // closed when the writer fails
	bufs     *estargzBuffers
}

// write is the library's currentCompressionWriter: hashed, and into the
// current member (one is opened if none is).
func (s *estargzSplitter) write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	s.diffHash.Write(p)
	if s.cur == nil {
		if err := s.open(nil, 0); err != nil {
			return err
		}
	}
	m := s.cur
	if m.stream != nil {
		return s.write2(m, p)
	}
	if m.buf.Len()+len(p) <= m.buf.Cap() {
		m.buf.Write(p)
		return nil
	}
	m.stream = make(chan []byte, 4)
	if err := s.send(m, false); err != nil {
		return err
	}
	return s.write2(m, p)
}

// write2 streams p into the streamed member m.
func (s *estargzSplitter) write2(m *estargzMember, p []byte) error {
	select {
	case m.stream <- bytes.Clone(p):
		return nil
	case <-s.quit:
		return errEstargzAborted
	}
}

var errEstargzAborted = errors.New("estargz writer stopped")

// open starts a member (the library's condOpenGz after closeGz).
func (s *estargzSplitter) open(chunk *estargz.TOCEntry, chunkLen int) error {
	b, err := s.bufs.get()
	if err != nil {
		return err
	}
	s.cur = &estargzMember{buf: b, chunk: chunk, chunkLen: chunkLen, done: make(chan struct{})}
	return nil
}

// end ends the current member, if any (the library's flushGz+closeGz
// when flush is set, closeGz alone at the end).
func (s *estargzSplitter) end(flush bool) error {
	m := s.cur
	if m == nil {
		return nil
	}
	s.cur = nil
	m.flush = flush
	if m.stream != nil {
		close(m.stream)
		return nil
	}
	return s.send(m, true)
}

// send queues m for the writer and, if toWorker, for a worker.
func (s *estargzSplitter) send(m *estargzMember, toWorker bool) error {
	select {
	case s.ordered <- m:
	case <-s.quit:
		return errEstargzAborted
	}
	if toWorker {
		select {
		case s.work <- m:
		case <-s.quit:
			return errEstargzAborted
		}
	}
	return nil
}

// estargzParams are the chunk size (it shapes the blob), the member size
// above which a member is streamed, and the number of workers (neither
// of which changes a byte).
type estargzParams struct{ chunkSize, maxMember, workers int }

// writeEstargz writes the estargz blob of the tar r to dst with workers
// compressing members. It returns the TOC digest and the diffID of the
// decompressed stream.
func writeEstargz(dst io.Writer, r io.Reader, comp *estargzCompressor, p estargzParams) (toc digest.Digest, diffID v1.Hash, err error) {
	workers := p.workers
	if p.maxMember < p.chunkSize {
		return "", v1.Hash{}, fmt.Errorf("estargz member buffer %d smaller than a chunk (%d)", p.maxMember, p.chunkSize)
	}
	bw := bufio.NewWriterSize(dst, 1<<16)
	cw := &countingWriter{w: bw}
	// Members in flight: ordered's (workers), the writer's, and the one
	// the splitter is handing to a worker (work is unbuffered, so a
	// member waits with its input buffer only there).
	ordered := make(chan *estargzMember, workers)
	work := make(chan *estargzMember)
	quit := make(chan struct{})
	bufs := &estargzBuffers{free: make(chan *bytes.Buffer, workers+1), max: workers + 1, size: p.maxMember, quit: quit}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var gz *gzip.Writer
			for m := range work {
				gz, m.err = compressEstargzMember(gz, m, comp.level)
				bufs.put(m.buf)
				m.buf = nil
				close(m.done)
			}
		}()
	}
	writeErr := make(chan error, 1)
	go func() { writeErr <- writeEstargzMembers(cw, ordered, bufs, comp.level, quit) }()

	s := &estargzSplitter{ordered: ordered, work: work, diffHash: sha256.New(), quit: quit, bufs: bufs}
	jtoc := &estargz.JTOC{Version: 1}
	serr := splitEstargz(s, r, jtoc, p.chunkSize)
	if serr == nil {
		serr = s.end(false)
	} else if s.cur != nil && s.cur.stream != nil {
		close(s.cur.stream) // the writer would wait for its end
	}
	close(ordered)
	close(work)
	werr := <-writeErr
	wg.Wait()
	// Let the buffers go before the TOC is encoded.
	s.bufs = nil
	for len(bufs.free) > 0 {
		<-bufs.free
	}
	switch {
	case werr != nil:
		return "", v1.Hash{}, fmt.Errorf("writing estargz entries: %w", werr)
	case serr != nil:
		return "", v1.Hash{}, fmt.Errorf("writing estargz entries: %w", serr)
	}
	toc, err = comp.WriteTOCAndFooter(cw, cw.n, jtoc, s.diffHash)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return "", v1.Hash{}, fmt.Errorf("writing estargz TOC: %w", err)
	}
	return toc, v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", s.diffHash.Sum(nil))}, nil
}

// compressEstargzMember gzips m as the library does: a writer at the
// level (Reset gives the bytes of a new one), the bytes, Flush if
// another member follows, Close. It also digests the chunk m starts
// with. gz is reused from call to call.
func compressEstargzMember(gz *gzip.Writer, m *estargzMember, level int) (*gzip.Writer, error) {
	m.out = estargzOut.Get().(*bytes.Buffer)
	m.out.Reset()
	if gz == nil {
		var err error
		if gz, err = gzip.NewWriterLevel(m.out, level); err != nil {
			return nil, err
		}
	} else {
		gz.Reset(m.out)
	}
	digestChunk(m, m.buf.Bytes())
	if _, err := gz.Write(m.buf.Bytes()); err != nil {
		return gz, err
	}
	if m.flush {
		if err := gz.Flush(); err != nil {
			return gz, err
		}
	}
	return gz, gz.Close()
}

// digestChunk sets the digests of the chunk at the start of b.
func digestChunk(m *estargzMember, b []byte) {
	if m.chunk == nil {
		return
	}
	d := digest.FromBytes(b[:m.chunkLen]).String()
	m.chunk.ChunkDigest = d
	if m.file {
		m.chunk.Digest = d
	}
}

// writeEstargzMembers writes the members in order, setting each chunk
// entry's Offset. It closes quit if it fails, and drains ordered.
func writeEstargzMembers(cw *countingWriter, ordered <-chan *estargzMember, bufs *estargzBuffers, level int, quit chan struct{}) (err error) {
	defer func() {
		if err != nil {
			// Stop the splitter and let it finish: the workers drain
			// their channel once it closes it.
			close(quit)
			for range ordered {
			}
		}
	}()
	var gz *gzip.Writer // for streamed members
	for m := range ordered {
		if m.chunk != nil {
			m.chunk.Offset = cw.n
		}
		if m.stream != nil {
			if gz, err = writeStreamedMember(cw, gz, m, level); err != nil {
				return err
			}
			bufs.put(m.buf)
			continue
		}
		<-m.done
		if m.err != nil {
			return m.err
		}
		if _, err := cw.Write(m.out.Bytes()); err != nil {
			return err
		}
		estargzOut.Put(m.out)
	}
	return nil
}

// writeStreamedMember compresses a member that outgrew its buffer
// straight onto cw, as compressEstargzMember would.
func writeStreamedMember(cw *countingWriter, gz *gzip.Writer, m *estargzMember, level int) (*gzip.Writer, error) {
	if gz == nil {
		var err error
		if gz, err = gzip.NewWriterLevel(cw, level); err != nil {
			return nil, err
		}
	} else {
		gz.Reset(cw)
	}
	digestChunk(m, m.buf.Bytes())
	if _, err := gz.Write(m.buf.Bytes()); err != nil {
		return gz, err
	}
	for p := range m.stream {
		if _, err := gz.Write(p); err != nil {
			return gz, err
		}
	}
	// The splitter set m.flush before closing m.stream.
	if m.flush {
		if err := gz.Flush(); err != nil {
			return gz, err
		}
	}
	return gz, gz.Close()
}

// splitEstargz is the library's appendTar in lossless mode, member for
// member: the same tar reader (tar-split's, raw accounting on), the
// same reads, the same TOC entries.
func splitEstargz(s *estargzSplitter, r io.Reader, jtoc *estargz.JTOC, chunkSize int) error {
	br := bufio.NewReader(r)
	// The library would gunzip a gzip input first; our tar never is one
	// (it starts with a name), so refuse rather than differ.
	if peek, _ := br.Peek(3); len(peek) == 3 && peek[0] == 0x1f && peek[1] == 0x8b && peek[2] == 8 {
		return errors.New("the tar starts with a gzip header")
	}
	tr := tar.NewReader(br)
	tr.RawAccounting = true
	var lastUname, lastGname map[int]string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			if err := s.write(tr.RawBytes()); err != nil {
				return err
			}
			break
		}
		if err != nil {
			return fmt.Errorf("reading tar: %w", err)
		}
		if strings.TrimPrefix(path.Clean("/"+h.Name), "/") == estargz.TOCTarName {
			return fmt.Errorf("the tar has an entry named %s, which estargz reserves", estargz.TOCTarName)
		}
		xattrs := make(map[string][]byte)
		for k, v := range h.PAXRecords {
			if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				xattrs[name] = []byte(v)
			}
		}
		ent := &estargz.TOCEntry{
			Name:        h.Name,
			Mode:        h.Mode,
			UID:         h.Uid,
			GID:         h.Gid,
			Uname:       nameIfChanged(&lastUname, h.Uid, h.Uname),
			Gname:       nameIfChanged(&lastGname, h.Gid, h.Gname),
			ModTime3339: estargzModTime(h.ModTime),
			Xattrs:      xattrs,
		}
		if err := s.write(tr.RawBytes()); err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeLink:
			ent.Type, ent.LinkName = "hardlink", h.Linkname
		case tar.TypeSymlink:
			ent.Type, ent.LinkName = "symlink", h.Linkname
		case tar.TypeDir:
			ent.Type = "dir"
		case tar.TypeReg:
			ent.Type, ent.Size = "reg", h.Size
		case tar.TypeChar:
			ent.Type, ent.DevMajor, ent.DevMinor = "char", int(h.Devmajor), int(h.Devminor)
		case tar.TypeBlock:
			ent.Type, ent.DevMajor, ent.DevMinor = "block", int(h.Devmajor), int(h.Devminor)
		case tar.TypeFifo:
			ent.Type = "fifo"
		default:
			return fmt.Errorf("%s: tar entry type %q has no estargz type", h.Name, h.Typeflag)
		}
		if h.Typeflag != tar.TypeReg || ent.Size == 0 {
			if h.Typeflag == tar.TypeReg {
				ent.Digest = digest.FromBytes(nil).String()
			}
			jtoc.Entries = append(jtoc.Entries, ent)
			continue
		}
		if err := splitEstargzFile(s, tr, jtoc, ent, int64(chunkSize)); err != nil {
			return err
		}
	}
	// Anything after the end-of-archive blocks, as the library keeps it.
	buf := make([]byte, 32<<10)
	for {
		n, err := br.Read(buf)
		if werr := s.write(buf[:n]); werr != nil {
			return werr
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading tar: %w", err)
		}
	}
}

// splitEstargzFile sends the payload of the regular file ent, one
// member per chunk.
func splitEstargzFile(s *estargzSplitter, tr *tar.Reader, jtoc *estargz.JTOC, ent *estargz.TOCEntry, chunkSize int64) error {
	total := ent.Size
	file := ent
	single := total <= chunkSize
	var whole hash.Hash // the file's digest, when it has several chunks
	if !single {
		whole = sha256.New()
	}
	for written := int64(0); written < total; {
		n := chunkSize
		if remain := total - written; remain < n {
			n = remain
		} else {
			ent.ChunkSize = n
		}
		if err := s.end(true); err != nil {
			return err
		}
		ent.ChunkOffset = written
		if err := s.open(ent, int(n)); err != nil {
			return err
		}
		s.cur.file = single
		// Read the chunk straight into the member's (empty) buffer.
		b := s.cur.buf
		b.Grow(int(n))
		chunk := b.AvailableBuffer()[:n]
		if _, err := io.ReadFull(tr, chunk); err != nil {
			return fmt.Errorf("reading %s: %w", ent.Name, err)
		}
		b.Write(chunk) // in place
		s.diffHash.Write(chunk)
		if whole != nil {
			whole.Write(chunk)
		}
		jtoc.Entries = append(jtoc.Entries, ent)
		written += n
		ent = &estargz.TOCEntry{Name: file.Name, Type: "chunk"}
	}
	if whole != nil {
		file.Digest = digest.NewDigest(digest.SHA256, whole).String()
	}
	return nil
}

// nameIfChanged is the library's: name, unless it was already the one
// recorded for id.
func nameIfChanged(mp *map[int]string, id int, name string) string {
	if name == "" {
		return ""
	}
	if *mp == nil {
		*mp = make(map[int]string)
	}
	if (*mp)[id] == name {
		return ""
	}
	(*mp)[id] = name
	return name
}

// estargzModTime is the library's TOC time: RFC 3339 in UTC to the
// second, empty for a zero or epoch time.
func estargzModTime(t time.Time) string {
	if t.IsZero() || t.Unix() == 0 {
		return ""
	}
	return t.UTC().Round(time.Second).Format(time.RFC3339)
}
