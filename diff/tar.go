package diff

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync/atomic"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/compat"
)

// Option configures Write.
type Option func(*writeOptions)

type writeOptions struct {
	profile compat.Profile
	clamp   *int64
	onEntry func(Change)
	maxFile int64
	xattrs  *XattrPolicy
	sparse  bool
}

// WithMaxFileSize makes a regular file larger than n bytes an
// ErrFileTooLarge error instead of writing it. archive/tar cannot write
// sparse entries, so a sparse file (1 TB apparent, a few blocks on disk)
// would become a layer of its full size; this is the opt-in guard. Off by
// default, as docker commit has none.
func WithMaxFileSize(n int64) Option { return func(o *writeOptions) { o.maxFile = n } }

// WithCompat picks the profile whose bytes Write reproduces (compat.Default
// when not given).
func WithCompat(p compat.Profile) Option { return func(o *writeOptions) { o.profile = p } }

// WithMtimeClamp writes no mtime later than epoch (SOURCE_DATE_EPOCH).
func WithMtimeClamp(epoch int64) Option { return func(o *writeOptions) { o.clamp = &epoch } }

// WithProgress calls fn for each change after it is written to the tar
// stream, on the goroutine that called Write. Its bytes may still be on
// their way to the writer given to Write.
func WithProgress(fn func(Change)) Option { return func(o *writeOptions) { o.onEntry = fn } }

// ProfileOf is the profile that opts make Write reproduce (compat.Default
// when none of them is a WithCompat), for the stages after Write whose
// bytes the profile also decides (layer picks its compressor by it).
func ProfileOf(opts ...Option) compat.Profile {
	o := writeOptions{profile: compat.Default}
	for _, opt := range opts {
		opt(&o)
	}
	return o.profile
}

// newRules returns fresh header rules (an empty hard-link table) for the
// options: the profile, the mtime clamp and the xattr policy (the
// profile's default unless WithXattrs gave one).
func (o *writeOptions) newRules() (headerRules, error) {
	rules := headerRules{profile: o.profile, seen: map[uint64]string{}, clamp: o.clamp}
	if o.xattrs != nil {
		rules.xattrs = *o.xattrs
		return rules, nil
	}
	p, err := ParseXattrs(o.profile.XattrList())
	if err != nil {
		return headerRules{}, fmt.Errorf("profile %s: %w", o.profile.Name, err)
	}
	rules.xattrs = p
	return rules, nil
}

// Write walks src and writes its layer tar to w. It returns the diffID (the
// sha256 of every byte written, trailer included) and the tar's size,
// both computed in the same pass. On error some bytes may already have been
// written to w; the caller discards them. Write does not close w.
//
// The walk and the file reads run on the calling goroutine; hashing and the
// writes to w run on one other goroutine, a bounded number of buffers
// behind (see hashingPipe), so reading and hashing overlap. File contents
// are read straight into those buffers. Write returns only after that
// goroutine has stopped: w is not written to afterwards.
func Write(ctx context.Context, w io.Writer, src Source, opts ...Option) (v1.Hash, int64, error) {
	o := writeOptions{profile: compat.Default}
	for _, opt := range opts {
		opt(&o)
	}
	out := newHashingPipe(w)
	defer out.abort()
	tw := tar.NewWriter(out)
	rules, err := o.newRules()
	if err != nil {
		return v1.Hash{}, 0, err
	}
	err = src.Changes(ctx, func(c Change) error {
		xattrs, err := readXattrs(c, rules.keptXattrs(c))
		if err != nil {
			return err
		}
		hdr, marker := rules.headers(c, xattrs)
		if o.maxFile > 0 && hdr.Typeflag == tar.TypeReg && hdr.Size > o.maxFile {
			return fmt.Errorf("%w: %s has %d bytes, more than %d", ErrFileTooLarge, c.Path, hdr.Size, o.maxFile)
		}
		if (hdr.Typeflag == tar.TypeChar || hdr.Typeflag == tar.TypeBlock) && (hdr.Devmajor > maxOctal7 || hdr.Devminor > maxOctal7) {
			// Only GNU base-256 holds these, and GNU cannot carry the
			// PAX records (xattrs, long names) a layer may need.
			return fmt.Errorf("%w: %s has device numbers %d/%d, above %d", ErrUnrepresentable, c.Path, hdr.Devmajor, hdr.Devminor, maxOctal7)
		}
		sparse := false
		if o.sparse && hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
			if sparse, err = writeSparse(tw, out, hdr, c.Source, c.dataIno()); err != nil {
				return fmt.Errorf("writing %s: %w", c.Path, err)
			}
		}
		if !sparse {
			if err := tw.WriteHeader(hdr); err != nil {
				if errors.Is(err, tar.ErrHeader) && len(xattrs) > 0 {
					return fmt.Errorf("%w: %s: %w (an xattr name holds '=' or a NUL?)", ErrUnrepresentable, c.Path, err)
				}
				return fmt.Errorf("writing header of %s: %w", c.Path, err)
			}
			if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
				if err := copyFile(tw, out.space, c.Source, hdr.Size, c.dataIno()); err != nil {
					return fmt.Errorf("writing %s: %w", c.Path, err)
				}
			}
		}
		if marker != nil {
			if err := tw.WriteHeader(marker); err != nil {
				return fmt.Errorf("writing opaque marker of %s: %w", c.Path, err)
			}
		}
		if o.onEntry != nil {
			o.onEntry(c)
		}
		return nil
	})
	if err != nil {
		return v1.Hash{}, 0, err
	}
	if err := tw.Close(); err != nil {
		return v1.Hash{}, 0, fmt.Errorf("closing tar stream: %w", err)
	}
	sum, n, err := out.close()
	if err != nil {
		return v1.Hash{}, 0, fmt.Errorf("writing tar stream: %w", err)
	}
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum)}, n, nil
}

// readXattrs reads the values of the xattrs names of c.Source;
// security.capability comes from the Change. An xattr removed since the
// listing is left out.
func readXattrs(c Change, names []string) (map[string]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	vals := make(map[string]string, len(names))
	for _, name := range names {
		if name == xattrCapability && c.Capability != "" {
			vals[name] = c.Capability
			continue
		}
		v, ok, err := getXattrOK(c.Source, name)
		if err != nil {
			return nil, fmt.Errorf("reading xattrs of %s: %w", c.Path, err)
		}
		if ok {
			vals[name] = v
		}
	}
	return vals, nil
}

// ErrSizeChanged is returned when a file's size differs from what lstat
// said while its data is being written.
var ErrSizeChanged = errors.New("file changed size while being read")

// ErrFileTooLarge is returned for a file over the WithMaxFileSize limit.
var ErrFileTooLarge = errors.New("file too large for the layer")

// ErrUnrepresentable is returned for an entry a PAX layer tar cannot hold,
// such as device numbers above 2097151.
var ErrUnrepresentable = errors.New("entry cannot be represented in a layer tar")

// maxOctal7 is the largest number seven octal digits (a USTAR device
// field) hold.
const maxOctal7 = 1<<21 - 1

// ErrFileChanged is returned when the path of a file, opened to write its
// data, no longer names the regular file the walk saw (it was replaced by
// a symlink, a fifo or another file in between).
var ErrFileChanged = errors.New("file replaced while being read")

// The writer side of Write: chunks of the stream travel from the walk to
// the goroutine that hashes and writes them. pipeChunks buffers of
// pipeChunkSize bytes circulate between the two, allocated on first use, so
// memory is bounded whatever the layer size.
const (
	pipeChunkSize = 1 << 20
	pipeChunks    = 4
)

// errPipeClosed is returned by a write after close or abort.
var errPipeClosed = errors.New("write after the tar stream was closed")

// hashingPipe is the io.Writer under Write's tar writer. It copies what it
// is given into fixed-size chunks and hands each full chunk to a goroutine
// that writes it to w and adds it to the diffID hash, in order, then gives
// the buffer back. The writer side blocks only when every buffer is in
// flight. A failed write to w stops the goroutine; the writer side sees the
// error on its next Write or close. Write, space, close and abort must be
// called from one goroutine.
//
// space lends the free tail of the current chunk so that file data can be
// read into place: a Write whose slice starts where that tail starts takes
// the bytes without copying them. The tar writer passes file data through
// unchanged (it only counts it), which is what lets copyFile read into the
// space and then Write it through the tar writer.
type hashingPipe struct {
	cur      []byte        // the chunk being filled; nil when none is held
	made     int           // buffers allocated so far, at most pipeChunks
	free     chan []byte   // empty buffers, back from the goroutine
	full     chan []byte   // filled chunks, in stream order; closed by close/abort
	done     chan struct{} // closed when the goroutine has returned
	closed   bool
	stopping atomic.Bool // abort: drop queued chunks instead of writing them

	// Owned by the goroutine until done is closed.
	h   hash.Hash
	n   int64
	err error
}

func newHashingPipe(w io.Writer) *hashingPipe {
	p := &hashingPipe{
		free: make(chan []byte, pipeChunks),
		// Room for every buffer, so handing a chunk over never blocks.
		full: make(chan []byte, pipeChunks),
		done: make(chan struct{}),
		h:    sha256.New(),
	}
	go p.run(w)
	return p
}

// run writes and hashes chunks until full is closed or a write fails.
func (p *hashingPipe) run(w io.Writer) {
	defer close(p.done)
	for b := range p.full {
		if p.stopping.Load() {
			return
		}
		n, err := w.Write(b)
		if err == nil && n != len(b) {
			err = io.ErrShortWrite
		}
		p.n += int64(n)
		if err != nil {
			p.err = err
			return
		}
		p.h.Write(b)
		p.free <- b[:0]
	}
}

func (p *hashingPipe) Write(b []byte) (int, error) {
	if len(b) > 0 && p.cur != nil && len(b) <= cap(p.cur)-len(p.cur) &&
		&b[0] == &p.cur[:len(p.cur)+1][len(p.cur)] {
		// Already in place: b was read into what space returned.
		p.cur = p.cur[:len(p.cur)+len(b)]
		if len(p.cur) == cap(p.cur) {
			if err := p.send(); err != nil {
				return 0, err
			}
		}
		return len(b), nil
	}
	written := 0
	for len(b) > 0 {
		if p.cur == nil {
			if err := p.take(); err != nil {
				return written, err
			}
		}
		n := copy(p.cur[len(p.cur):cap(p.cur)], b)
		p.cur = p.cur[:len(p.cur)+n]
		written += n
		b = b[n:]
		if len(p.cur) == cap(p.cur) {
			if err := p.send(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// space returns the free tail of the current chunk (never empty), taking a
// buffer first if none is held. It stays valid until the next call of any
// other method.
func (p *hashingPipe) space() ([]byte, error) {
	if p.cur == nil {
		if err := p.take(); err != nil {
			return nil, err
		}
	}
	return p.cur[len(p.cur):cap(p.cur)], nil
}

// take makes an empty buffer the current chunk: a new one while fewer than
// pipeChunks exist, else the next one the goroutine gives back.
func (p *hashingPipe) take() error {
	if p.closed {
		return errPipeClosed
	}
	select {
	case b := <-p.free:
		p.cur = b
		return nil
	default:
	}
	if p.made < pipeChunks {
		p.made++
		p.cur = make([]byte, 0, pipeChunkSize)
		return nil
	}
	select {
	case b := <-p.free:
		p.cur = b
		return nil
	case <-p.done:
		return p.failure()
	}
}

// send hands the current chunk to the goroutine.
func (p *hashingPipe) send() error {
	select {
	case <-p.done:
		return p.failure()
	default:
	}
	p.full <- p.cur // never blocks: full has room for every buffer
	p.cur = nil
	return nil
}

// failure is the error that stopped the goroutine; call after done.
func (p *hashingPipe) failure() error {
	if p.err != nil {
		return p.err
	}
	return errPipeClosed
}

// close sends the last, partial chunk, waits for everything to be written
// and returns the sha256 and the count of the bytes written to w.
func (p *hashingPipe) close() ([]byte, int64, error) {
	if p.closed {
		return nil, 0, errPipeClosed
	}
	if len(p.cur) > 0 {
		if err := p.send(); err != nil {
			p.abort()
			return nil, 0, err
		}
	}
	p.closed = true
	close(p.full)
	<-p.done
	if p.err != nil {
		return nil, 0, p.err
	}
	return p.h.Sum(nil), p.n, nil
}

// abort drops whatever has not been written yet and waits for the
// goroutine to return. It does nothing after close.
func (p *hashingPipe) abort() {
	if p.closed {
		return
	}
	p.closed = true
	p.stopping.Store(true)
	close(p.full)
	<-p.done
}

// Reader returns the layer tar of src as a stream, written by Write in a
// goroutine. A failure reaches the reader as the error of Read. The caller
// must Close the reader; closing early stops the walk.
func Reader(ctx context.Context, src Source, opts ...Option) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		_, _, err := Write(ctx, pw, src, opts...)
		pw.CloseWithError(err)
	}()
	return pr
}
