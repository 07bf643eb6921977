package layer

import (
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// sealer is a compressor whose format adds to the stream or describes it
// in layer annotations (estargz, zstd:chunked). After a successful Close,
// seal says what it added.
type sealer interface {
	io.WriteCloser
	seal() sealed
}

// sealed is what a seekable compressor adds to a layer.
type sealed struct {
	// diffID, when set, replaces the tar's digest: the format put more
	// into the uncompressed stream (estargz's TOC entry).
	diffID *v1.Hash
	// extraTar is the number of uncompressed bytes the format added.
	extraTar int64
	// annotations go on the layer's descriptor in the manifest.
	annotations map[string]string
}

// pipeCompressor runs a format writer that reads a tar (estargz's
// AppendTar, our zstd:chunked writer) on its own goroutine, fed through
// a pipe by Write. If the writer fails, Write fails with its error.
type pipeCompressor struct {
	pw   *io.PipeWriter
	done chan error
	n    int64 // tar bytes written
}

// startPipe runs run on a goroutine with the read end of a pipe; run must
// read to EOF on success.
func startPipe(run func(io.Reader) error) *pipeCompressor {
	pr, pw := io.Pipe()
	p := &pipeCompressor{pw: pw, done: make(chan error, 1)}
	go func() {
		err := run(pr)
		if err == nil {
			// The format may stop reading at the tar's end; anything after
			// it would be silently dropped, so refuse it.
			if n, _ := io.Copy(io.Discard, pr); n != 0 {
				err = fmt.Errorf("%d bytes after the end of the tar", n)
			}
		}
		pr.CloseWithError(err) // a nil err makes further Writes fail with ErrClosedPipe
		p.done <- err
	}()
	return p
}

func (p *pipeCompressor) Write(b []byte) (int, error) {
	n, err := p.pw.Write(b)
	p.n += int64(n)
	return n, err
}

// Close ends the tar and waits for the writer to finish.
func (p *pipeCompressor) Close() error {
	p.pw.Close()
	return <-p.done
}

// countingWriter counts what passes through to w.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
