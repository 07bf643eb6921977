package export

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/layercommit/layercommit/internal/atomicfile"
)

// copyImage opens src and writes it to dest through the transports, as
// commit.Copy does.
func copyImage(ctx context.Context, src, dest string) error {
	img, err := Open(ctx, src)
	if err != nil {
		return err
	}
	d, err := NewDestination(ctx, dest)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Write(ctx, img)
}

// faultyRegistry is ggcr's in-process registry behind a handler that may
// answer a request itself (a fault) instead of passing it on.
type faultyRegistry struct {
	srv   *httptest.Server
	host  string
	mu    sync.Mutex
	count map[string]int // requests per "METHOD path"
	// fault is called with the request and how many times its method and
	// path were seen (1 for the first); it returns true if it answered.
	fault func(w http.ResponseWriter, r *http.Request, n int, next http.Handler) bool
}

func newFaultyRegistry(t *testing.T) *faultyRegistry {
	t.Helper()
	f := &faultyRegistry{count: map[string]int{}}
	next := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Method + " " + r.URL.Path
		f.mu.Lock()
		f.count[key]++
		n := f.count[key]
		fault := f.fault
		f.mu.Unlock()
		if fault != nil && fault(w, r, n, next) {
			return
		}
		next.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	f.host = strings.TrimPrefix(f.srv.URL, "http://")
	return f
}

func (f *faultyRegistry) requests(method, path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count[method+" "+path]
}

func (f *faultyRegistry) reset(fault func(http.ResponseWriter, *http.Request, int, http.Handler) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count = map[string]int{}
	f.fault = fault
}

// recorded runs next into a buffer and returns the response.
func recorded(next http.Handler, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	return rec
}

// fastRetries shortens the backoff for the test.
func fastRetries(t *testing.T) {
	old := RegistryRetry
	RegistryRetry.Backoff.Duration = 5 * time.Millisecond
	t.Cleanup(func() { RegistryRetry = old })
}

// TestRegistryFaults pulls an image through a registry that misbehaves
// (rows of HOSTILE.md 5.4) into an OCI layout, and pushes to one: a
// fault that can be retried is retried a bounded number of times, and
// one that cannot fails with nothing stored.
func TestRegistryFaults(t *testing.T) {
	fastRetries(t)
	reg := newFaultyRegistry(t)
	img, err := random.Image(256<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.host + "/test/img:v1"
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	ld, _ := layers[1].Digest()
	blobPath := "/v2/test/img/blobs/" + ld.String()
	manifestPath := "/v2/test/img/manifests/v1"
	size, _ := layers[1].Size()
	maxTries := RegistryRetry.Backoff.Steps + 1

	status := func(code int, times int) func(http.ResponseWriter, *http.Request, int, http.Handler) bool {
		return func(w http.ResponseWriter, r *http.Request, n int, _ http.Handler) bool {
			if r.Method == http.MethodGet && r.URL.Path == blobPath && n <= times {
				http.Error(w, http.StatusText(code), code)
				return true
			}
			return false
		}
	}
	// bodyFault serves the blob through change (the first `times` GETs).
	bodyFault := func(times int, change func(w http.ResponseWriter, body []byte)) func(http.ResponseWriter, *http.Request, int, http.Handler) bool {
		return func(w http.ResponseWriter, r *http.Request, n int, next http.Handler) bool {
			if r.Method != http.MethodGet || r.URL.Path != blobPath || n > times {
				return false
			}
			change(w, recorded(next, r).Body.Bytes())
			return true
		}
	}
	truncate := func(w http.ResponseWriter, body []byte) {
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(http.StatusOK)
		w.Write(body[:len(body)/2])
		// Returning early makes net/http close the connection.
	}
	reset := func(w http.ResponseWriter, body []byte) {
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			panic(err)
		}
		fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: application/octet-stream\r\n\r\n", len(body))
		buf.Write(body[:len(body)/3])
		buf.Flush()
		conn.(*net.TCPConn).SetLinger(0) // close with RST
		conn.Close()
	}
	wrongBytes := func(w http.ResponseWriter, body []byte) {
		bad := append([]byte(nil), body...)
		bad[len(bad)/2] ^= 0xff
		w.Write(bad)
	}
	longer := func(w http.ResponseWriter, body []byte) {
		// No Content-Length (chunked): only the digest and size checks
		// can tell.
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		w.Write(append(append([]byte(nil), body...), "extra bytes"...))
	}
	serveManifest := func(edit func(m map[string]any)) func(http.ResponseWriter, *http.Request, int, http.Handler) bool {
		return func(w http.ResponseWriter, r *http.Request, n int, next http.Handler) bool {
			if r.URL.Path != manifestPath {
				return false
			}
			rec := recorded(next, r)
			var m map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
				panic(err)
			}
			edit(m)
			b, _ := json.Marshal(m)
			w.Header().Set("Content-Type", rec.Header().Get("Content-Type"))
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			if r.Method != http.MethodHead {
				w.Write(b)
			}
			return true
		}
	}

	type row struct {
		id, name string
		fault    func(http.ResponseWriter, *http.Request, int, http.Handler) bool
		wantErr  string // "" for success
		// gets bounds the GETs of the blob: [min, max].
		gets [2]int
		// ranged wants a resumed request (Range) among them.
		ranged bool
	}
	rows := []row{
		{"F11", "503 twice then served", status(503, 2), "", [2]int{3, 3}, false},
		{"F11", "429 twice then served", status(429, 2), "", [2]int{3, 3}, false},
		{"F11", "408 once", status(408, 1), "", [2]int{2, 2}, false},
		{"F11", "500 once", status(500, 1), "", [2]int{2, 2}, false},
		{"F11", "502 once", status(502, 1), "", [2]int{2, 2}, false},
		{"F11", "504 once", status(504, 1), "", [2]int{2, 2}, false},
		{"F11", "503 always: bounded", status(503, 1000), "503", [2]int{2, maxTries}, false},
		{"F11", "404 is not retried", status(404, 1000), "404", [2]int{1, 1}, false},
		{"F12", "wrong bytes", bodyFault(1000, wrongBytes), "sha256", [2]int{1, 2}, false},
		{"F13", "truncated body resumed", bodyFault(1, truncate), "", [2]int{2, 2}, true},
		{"F13", "connection reset resumed", bodyFault(1, reset), "", [2]int{2, 2}, true},
		{"F13", "truncated every time: bounded", bodyFault(1000, truncate), "unexpected EOF", [2]int{2, RegistryRetry.Resumes + 1}, false},
		// ggcr reads a blob only up to its descriptor's size and verifies
		// the digest of those bytes: the extra is never read, and what is
		// stored is right.
		{"F14", "body longer than its descriptor", bodyFault(1000, longer), "", [2]int{1, 1}, false},
		{"F16", "manifest with layers and manifests", serveManifest(func(m map[string]any) { m["manifests"] = []any{} }), "both layers and manifests", [2]int{0, 0}, false},
		{"F16", "manifest mediaType disagrees", serveManifest(func(m map[string]any) { m["mediaType"] = "application/vnd.oci.image.index.v1+json" }), "says it is", [2]int{0, 0}, false},
		{"F17", "digest with a path in it", serveManifest(func(m map[string]any) {
			m["layers"].([]any)[0].(map[string]any)["digest"] = "sha256:../../../../etc/passwd"
		}), "non-hex character", [2]int{0, 0}, false},
		{"F17", "uppercase digest", serveManifest(func(m map[string]any) {
			l := m["layers"].([]any)[0].(map[string]any)
			l["digest"] = strings.ToUpper(l["digest"].(string))
		}), "", [2]int{0, 0}, false},
	}
	for _, tc := range rows {
		t.Run(tc.id+" "+tc.name, func(t *testing.T) {
			reg.reset(tc.fault)
			dir := filepath.Join(t.TempDir(), "layout")
			err := copyImage(context.Background(), "docker://"+ref, "oci:"+dir+":x")
			if tc.wantErr == "" && tc.id == "F17" {
				// An uppercase digest fails: ggcr rejects it when parsing.
				if err == nil {
					t.Fatal("an uppercase digest was accepted")
				}
			} else if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("copy: %v", err)
				}
				l, err := layoutImage(dir)
				if err != nil {
					t.Fatal(err)
				}
				if err := validate.Image(l); err != nil {
					t.Fatalf("validate.Image: %v", err)
				}
			} else {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("copy: error %v, want one with %q", err, tc.wantErr)
				}
				assertNothingStored(t, dir, ld)
			}
			gets := reg.requests(http.MethodGet, blobPath)
			if gets < tc.gets[0] || gets > tc.gets[1] {
				t.Errorf("%d GETs of the blob, want %d to %d", gets, tc.gets[0], tc.gets[1])
			}
			_ = size
		})
	}
}

func layoutImage(dir string) (v1.Image, error) {
	return Open(context.Background(), "oci:"+dir+":x")
}

// assertNothingStored: after a failed copy into a fresh layout there is
// no layout, or one without the tag, the blob or any temp file.
func assertNothingStored(t *testing.T, dir string, blob v1.Hash) {
	t.Helper()
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return
	}
	if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256", blob.Hex)); err == nil {
		t.Errorf("the bad blob %s was stored", blob)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "index.json")); err == nil && strings.Contains(string(b), `"x"`) {
		t.Errorf("the failed image was tagged: %s", b)
	}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.HasPrefix(fi.Name(), atomicfile.TempPrefix) {
			t.Errorf("temp file left: %s", p)
		}
		return nil
	})
}

// TestRegistryPushFaults pushes through a misbehaving registry.
func TestRegistryPushFaults(t *testing.T) {
	fastRetries(t)
	src := filepath.Join(t.TempDir(), "src")
	img, err := random.Image(64<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewDestination(context.Background(), "oci:"+src+":x")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Write(context.Background(), img); err != nil {
		t.Fatal(err)
	}
	p.Close()
	// The layout holds it with OCI types: that is the manifest pushed.
	stored, err := Open(context.Background(), "oci:"+src+":x")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := stored.Digest()
	var firstPut atomic.Bool
	var putsMu sync.Mutex
	putsOf := map[string]int{} // DIGEST_INVALID answers per blob

	for _, tc := range []struct {
		id, name string
		fault    func(w http.ResponseWriter, r *http.Request, n int, next http.Handler) bool
		wantErr  string
		// puts bounds the blob upload PUTs.
		puts [2]int
	}{
		{"F11", "503 on the first upload", func(w http.ResponseWriter, r *http.Request, n int, _ http.Handler) bool {
			// Each retry is a new upload session (a new path): fail the
			// first PUT of all.
			if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/") && firstPut.CompareAndSwap(false, true) {
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return true
			}
			return false
		}, "", [2]int{2, 100}},
		{"F21", "DIGEST_INVALID is a hard error", func(w http.ResponseWriter, r *http.Request, n int, _ http.Handler) bool {
			if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/") {
				putsMu.Lock()
				putsOf[r.URL.Query().Get("digest")]++
				putsMu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				io.WriteString(w, `{"errors":[{"code":"DIGEST_INVALID","message":"digest did not match"}]}`)
				return true
			}
			return false
		}, "DIGEST_INVALID", [2]int{1, 2}}, // the config and the layer upload at once
		{"F23", "the tag names another manifest", func(w http.ResponseWriter, r *http.Request, n int, next http.Handler) bool {
			if r.Method == http.MethodHead && strings.HasSuffix(r.URL.Path, "/manifests/pushed") {
				rec := recorded(next, r)
				if rec.Code != http.StatusOK {
					return false // before the push: not there yet
				}
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.Header().Set("Docker-Content-Digest", "sha256:"+strings.Repeat("ab", 32))
				w.WriteHeader(http.StatusOK)
				return true
			}
			return false
		}, "not the pushed manifest", [2]int{0, 100}},
	} {
		t.Run(tc.id+" "+tc.name, func(t *testing.T) {
			// A registry of its own: ggcr's keeps blobs across repos.
			reg := newFaultyRegistry(t)
			reg.reset(tc.fault)
			repo := strings.ToLower(strings.ReplaceAll(tc.id+"-"+tc.name, " ", "-"))
			repo = strings.Map(func(r rune) rune {
				if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
					return r
				}
				return '-'
			}, repo)
			dst := "docker://" + reg.host + "/" + repo + ":pushed"
			err := copyImage(context.Background(), "oci:"+src+":x", dst)
			puts := 0
			reg.mu.Lock()
			for k, n := range reg.count {
				if strings.HasPrefix(k, "PUT ") && strings.Contains(k, "/blobs/uploads/") {
					puts += n
				}
			}
			reg.mu.Unlock()
			if puts < tc.puts[0] || puts > tc.puts[1] {
				t.Errorf("%d blob PUTs, want %d to %d", puts, tc.puts[0], tc.puts[1])
			}
			putsMu.Lock()
			for dg, n := range putsOf {
				if n > 1 {
					t.Errorf("blob %s was PUT %d times", dg, n)
				}
			}
			putsMu.Unlock()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("push: error %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("push: %v", err)
			}
			r, _ := name.ParseReference(strings.TrimPrefix(dst, "docker://"))
			got, err := remote.Image(r)
			if err != nil {
				t.Fatal(err)
			}
			if d, _ := got.Digest(); d != want {
				t.Errorf("registry holds %s, pushed %s", d, want)
			}
			if err := validate.Image(got); err != nil {
				t.Errorf("validate.Image: %v", err)
			}
		})
	}
}
