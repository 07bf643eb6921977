package export

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// RegistryRetry bounds the retries of registry requests: requests
// answered 408, 429, 500, 502, 503 or 504, refused, reset or timed out
// are sent again after Backoff (ggcr's retry transport), and a blob body
// cut short is resumed where it stopped (resumingTransport). Tests shorten
// it.
var RegistryRetry = struct {
	Backoff remote.Backoff
	// Resumes is the most times one body is resumed.
	Resumes int
}{
	Backoff: remote.Backoff{Duration: time.Second, Factor: 3, Jitter: 0.1, Steps: 3},
	Resumes: 3,
}

// retryStatusCodes are the answers sent again. The distribution spec
// calls only 502-504 temporary; 408, 429 and 500 are retried too, as
// Docker and ggcr do, within the same bound.
var retryStatusCodes = []int{
	http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
	http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout,
}

// resumingTransport resumes a GET whose body breaks off (truncated,
// reset, timed out) by asking again from the byte where it stopped
// (Range; from the start, skipping what was read, when the registry
// ignores Range). The caller still verifies size and digest at the end
// (ggcr's verify.ReadCloser, our VerifiedReader), so a resumed body that
// differs fails as a whole.
type resumingTransport struct {
	inner http.RoundTripper
}

func (t resumingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.inner.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet || resp.StatusCode != http.StatusOK ||
		req.Header.Get("Range") != "" || !strings.Contains(req.URL.Path, "/blobs/") {
		return resp, err
	}
	resp.Body = &resumingBody{t: t.inner, req: req, body: resp.Body, size: resp.ContentLength}
	return resp, nil
}

type resumingBody struct {
	t       http.RoundTripper
	req     *http.Request
	body    io.ReadCloser
	size    int64 // -1 if unknown
	n       int64 // bytes delivered
	resumes int
}

func (b *resumingBody) Read(p []byte) (int, error) {
	for {
		n, err := b.body.Read(p)
		b.n += int64(n)
		if err == nil {
			return n, nil
		}
		if err == io.EOF && (b.size < 0 || b.n >= b.size) {
			return n, io.EOF
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // shorter than its Content-Length
		}
		if !resumable(err) || b.resumes >= RegistryRetry.Resumes || b.req.Context().Err() != nil {
			return n, err
		}
		if rerr := b.resume(); rerr != nil {
			return n, fmt.Errorf("%w (resuming at byte %d: %v)", err, b.n, rerr)
		}
		if n > 0 {
			return n, nil
		}
	}
}

// resume asks for the rest of the body.
func (b *resumingBody) resume() error {
	b.resumes++
	b.body.Close()
	b.body = io.NopCloser(strings.NewReader(""))
	d := RegistryRetry.Backoff.Duration
	for i := 1; i < b.resumes; i++ {
		d = time.Duration(float64(d) * RegistryRetry.Backoff.Factor)
	}
	select {
	case <-time.After(d):
	case <-b.req.Context().Done():
		return b.req.Context().Err()
	}
	// Ask for the rest; a registry that refuses the range (416, or
	// anything but a matching 206 or a 200) is asked for the whole body,
	// and what was read already is skipped.
	rng := "bytes=" + strconv.FormatInt(b.n, 10) + "-"
	if b.size > 0 {
		rng += strconv.FormatInt(b.size-1, 10)
	}
	for _, ranged := range []bool{true, false} {
		req := b.req.Clone(b.req.Context())
		if ranged {
			req.Header.Set("Range", rng)
		}
		resp, err := b.t.RoundTrip(req)
		if err != nil {
			return err
		}
		switch {
		case resp.StatusCode == http.StatusPartialContent && ranged &&
			strings.HasPrefix(resp.Header.Get("Content-Range"), "bytes "+strconv.FormatInt(b.n, 10)+"-"):
			b.body = resp.Body
			return nil
		case resp.StatusCode == http.StatusOK:
			if _, err := io.CopyN(io.Discard, resp.Body, b.n); err != nil {
				resp.Body.Close()
				return err
			}
			b.body = resp.Body
			return nil
		}
		resp.Body.Close()
		if !ranged {
			return fmt.Errorf("registry answered %s", resp.Status)
		}
	}
	return nil
}

func (b *resumingBody) Close() error { return b.body.Close() }

// resumable reports errors of the connection rather than of the data.
func resumable(err error) bool {
	var ne net.Error
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.As(err, &ne) && ne.Timeout()
}
