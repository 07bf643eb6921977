package layer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/vbatts/tar-split/archive/tar"
)

// The zstd:chunked frames are compressed by a few workers and written in
// order, for the same reason as estargz's members (estargz.go): one
// encoder, frame after frame, left a core idle. Each frame is what one
// encoder makes of its bytes after Reset (the frames are independent),
// so the blob is the same whatever the number of workers
// (TestZstdChunkedMatchesContainersStorage, TestSeekableGoldenDigests).
// A frame of more than zstdFrameBuffer bytes (a large file's payload)
// is streamed: the writer compresses it itself, in order, so memory
// stays at workers+1 input buffers and the compressed frames in flight.

const zstdFrameBuffer = 4 << 20

// zstdFrame is one zstd frame of the stream.
type zstdFrame struct {
	buf    *bytes.Buffer  // input, never grown past its capacity
	stream chan zstdPiece // set when buf overflowed: the rest of the input
	// tail is where in buf the bytes after the tar's end begin (-1: not
	// in this frame). The sequential writer fed them to the encoder with
	// io.Copy, that is its ReadFrom, which first ends the block of what
	// was written before: so must we.
	tail int
	// start and end, when set, receive the frame's start and end
	// offsets in the blob (a payload's Offset and EndOffset).
	start, end *int64
	out        *bytes.Buffer
	err        error
	done       chan struct{}
}

// zstdPiece is input of a streamed frame.
type zstdPiece struct {
	b    []byte
	tail bool // b is after the tar's end (see zstdFrame.tail)
}

var zstdFrameOut = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// zstdFrameSplitter sends frames to the writer (in order) and workers.
type zstdFrameSplitter struct {
	ordered chan<- *zstdFrame
	work    chan<- *zstdFrame
	bufs    *estargzBuffers
	cur     *zstdFrame
	quit    <-chan struct{}
}

func (s *zstdFrameSplitter) open(start *int64) error {
	b, err := s.bufs.get()
	if err != nil {
		return err
	}
	s.cur = &zstdFrame{buf: b, start: start, tail: -1, done: make(chan struct{})}
	return nil
}

func (s *zstdFrameSplitter) write(p []byte) error { return s.writePiece(p, false) }

// startTail marks the start of the bytes after the tar's end.
func (s *zstdFrameSplitter) startTail() error {
	if s.cur.stream == nil {
		s.cur.tail = s.cur.buf.Len()
		return nil
	}
	return s.writePiece(nil, true)
}

func (s *zstdFrameSplitter) writePiece(p []byte, tail bool) error {
	f := s.cur
	if f.stream == nil && f.buf.Len()+len(p) <= f.buf.Cap() {
		f.buf.Write(p)
		return nil
	}
	if f.stream == nil {
		if f.tail >= 0 {
			// The tail begins in buf: stream all of it.
			tail = true
		}
		f.stream = make(chan zstdPiece, 4)
		select {
		case s.ordered <- f:
		case <-s.quit:
			return errEstargzAborted
		}
	}
	select {
	case f.stream <- zstdPiece{bytes.Clone(p), tail || f.tail >= 0}:
		return nil
	case <-s.quit:
		return errEstargzAborted
	}
}

// end ends the current frame; end, if set, receives its end offset.
func (s *zstdFrameSplitter) end(end *int64) error {
	f := s.cur
	s.cur = nil
	f.end = end
	if f.stream != nil {
		close(f.stream)
		return nil
	}
	select {
	case s.ordered <- f:
	case <-s.quit:
		return errEstargzAborted
	}
	select {
	case s.work <- f:
	case <-s.quit:
		return errEstargzAborted
	}
	return nil
}

// writeZstdChunkedFrames writes the tar's frames: headers share a frame,
// each non-empty payload has its own. It returns the TOC entries.
func writeZstdChunkedFrames(out *countingWriter, its io.Reader, level, workers, bufSize int) ([]*zstdChunkedEntry, error) {
	ordered := make(chan *zstdFrame, workers)
	work := make(chan *zstdFrame)
	quit := make(chan struct{})
	bufs := &estargzBuffers{free: make(chan *bytes.Buffer, workers+1), max: workers + 1, size: bufSize, quit: quit}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			enc, err := newZstdChunkedEncoder(nil, level, false)
			for f := range work {
				if err != nil {
					f.err = err
				} else {
					f.out = zstdFrameOut.Get().(*bytes.Buffer)
					f.out.Reset()
					f.err = compressZstdFrame(enc, f.out, f.buf.Bytes(), f.tail, nil)
				}
				bufs.put(f.buf)
				f.buf = nil
				close(f.done)
			}
			if enc != nil {
				enc.Close()
			}
		}()
	}
	writeErr := make(chan error, 1)
	go func() { writeErr <- writeZstdFrames(out, ordered, bufs, level, quit) }()

	s := &zstdFrameSplitter{ordered: ordered, work: work, bufs: bufs, quit: quit}
	entries, serr := splitZstdChunked(s, its)
	if serr == nil {
		serr = s.end(nil)
	} else if s.cur != nil && s.cur.stream != nil {
		close(s.cur.stream)
	}
	close(ordered)
	close(work)
	werr := <-writeErr
	wg.Wait()
	if werr != nil {
		return nil, werr
	}
	return entries, serr
}

// compressZstdFrame makes one frame of b (and then of what comes through
// more) with enc: Reset, the bytes, Close, as one encoder frame after
// frame would.
func compressZstdFrame(enc *zstd.Encoder, dst io.Writer, b []byte, tail int, more <-chan zstdPiece) error {
	enc.Reset(dst)
	head := b
	if tail >= 0 {
		head = b[:tail]
	}
	if len(head) > 0 {
		if _, err := enc.Write(head); err != nil {
			return err
		}
	}
	if tail >= 0 && more == nil {
		if _, err := enc.ReadFrom(bytes.NewReader(b[tail:])); err != nil {
			return err
		}
		return enc.Close()
	}
	if more != nil {
		var rest io.Reader // the tail, once it starts
		for p := range more {
			if p.tail {
				rest = &zstdTailReader{first: p.b, more: more}
				if tail >= 0 {
					rest = io.MultiReader(bytes.NewReader(b[tail:]), rest)
				}
				break
			}
			if _, err := enc.Write(p.b); err != nil {
				return err
			}
		}
		if rest != nil {
			if _, err := enc.ReadFrom(rest); err != nil {
				return err
			}
		}
	}
	return enc.Close()
}

// zstdTailReader reads the tail pieces of a streamed frame.
type zstdTailReader struct {
	first []byte
	more  <-chan zstdPiece
}

func (r *zstdTailReader) Read(p []byte) (int, error) {
	for len(r.first) == 0 {
		piece, ok := <-r.more
		if !ok {
			return 0, io.EOF
		}
		r.first = piece.b
	}
	n := copy(p, r.first)
	r.first = r.first[n:]
	return n, nil
}

// writeZstdFrames writes the frames in order and records the offsets.
func writeZstdFrames(out *countingWriter, ordered <-chan *zstdFrame, bufs *estargzBuffers, level int, quit chan struct{}) (err error) {
	defer func() {
		if err != nil {
			close(quit)
			for range ordered {
			}
		}
	}()
	var enc *zstd.Encoder // for streamed frames
	defer func() {
		if enc != nil {
			enc.Close()
		}
	}()
	for f := range ordered {
		if f.start != nil {
			*f.start = out.n
		}
		if f.stream != nil {
			if enc == nil {
				if enc, err = newZstdChunkedEncoder(nil, level, false); err != nil {
					return err
				}
			}
			if err := compressZstdFrame(enc, out, f.buf.Bytes(), f.tail, f.stream); err != nil {
				return err
			}
			bufs.put(f.buf)
		} else {
			<-f.done
			if f.err != nil {
				return f.err
			}
			if _, err := out.Write(f.out.Bytes()); err != nil {
				return err
			}
			zstdFrameOut.Put(f.out)
		}
		// The splitter set f.end before handing f over or closing its
		// stream.
		if f.end != nil {
			*f.end = out.n
		}
	}
	return nil
}

// splitZstdChunked reads the tar and cuts it into frames.
func splitZstdChunked(s *zstdFrameSplitter, its io.Reader) ([]*zstdChunkedEntry, error) {
	if err := s.open(nil); err != nil {
		return nil, err
	}
	tr := tar.NewReader(its)
	tr.RawAccounting = true
	buf := make([]byte, 32<<10)
	var entries []*zstdChunkedEntry
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading tar: %w", err)
		}
		if err := s.write(tr.RawBytes()); err != nil {
			return nil, err
		}
		ev, err := zstdChunkedEntryOf(hdr)
		if err != nil {
			return nil, err
		}
		e := &ev
		var sum = sha256.New()
		payload := false
		for {
			n, rerr := tr.Read(buf)
			if n > 0 {
				if !payload {
					// The payload starts a frame of its own.
					if err := s.end(nil); err != nil {
						return nil, err
					}
					if err := s.open(&e.Offset); err != nil {
						return nil, err
					}
					payload = true
				}
				sum.Write(buf[:n])
				if err := s.write(buf[:n]); err != nil {
					return nil, err
				}
			}
			if errors.Is(rerr, io.EOF) {
				break
			}
			if rerr != nil {
				return nil, fmt.Errorf("reading %s: %w", hdr.Name, rerr)
			}
		}
		if payload {
			if err := s.end(&e.EndOffset); err != nil {
				return nil, err
			}
			if err := s.open(nil); err != nil {
				return nil, err
			}
			e.Digest = "sha256:" + hex.EncodeToString(sum.Sum(nil))
		}
		entries = append(entries, e)
	}
	// The end-of-archive blocks and anything after them, so that the
	// stream decompresses to the whole tar.
	if err := s.write(tr.RawBytes()); err != nil {
		return nil, err
	}
	if err := s.startTail(); err != nil {
		return nil, err
	}
	for {
		n, err := its.Read(buf)
		if werr := s.write(buf[:n]); werr != nil {
			return nil, werr
		}
		if err == io.EOF {
			return entries, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading tar: %w", err)
		}
	}
}
