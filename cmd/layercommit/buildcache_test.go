package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/layercommit/layercommit/internal/oracle"
)

// cacheBase is a base with a shell, in the shared loopback registry.
func cacheBase(t *testing.T) string {
	t.Helper()
	b := os.Getenv("LAYERCOMMIT_BUILDKIT_BASE")
	if b == "" {
		oracle.Missing(t, "no base image in the loopback registry: source scripts/oracles.sh and run oracles_up")
	}
	return b
}

// blobProxy sits in front of a registry and records, per blob digest,
// how often it was uploaded (PUT ...?digest=) and HEADed.
type blobProxy struct {
	mu      sync.Mutex
	puts    map[string]int
	heads   map[string]int
	uploads int // POST /blobs/uploads/ begun
	addr    string
}

func newBlobProxy(t *testing.T, registry string) *blobProxy {
	t.Helper()
	p := &blobProxy{puts: map[string]int{}, heads: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: registry})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		switch {
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/"):
			p.uploads++
			if d := r.URL.Query().Get("digest"); d != "" {
				p.puts[d]++
			}
		case r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/"):
			p.puts[r.URL.Query().Get("digest")]++
		case r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/blobs/"):
			p.heads[r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]]++
		}
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.addr = strings.TrimPrefix(srv.URL, "http://")
	return p
}

func (p *blobProxy) reset() (puts, heads map[string]int, uploads int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	puts, heads, uploads = p.puts, p.heads, p.uploads
	p.puts, p.heads, p.uploads = map[string]int{}, map[string]int{}, 0
	return
}

// cacheDockerfile has two stages; each RUN prints a marker that shows
// it ran, and writes the time, so a rerun also changes the image.
func cacheDockerfile(base string) string {
	return fmt.Sprintf(`FROM %[1]s AS tools
RUN echo RAN-TOOLS; date > /built
FROM %[1]s
COPY a /a
RUN echo RAN-A; cat /a > /a2; date > /t
COPY b /b
RUN echo RAN-B; cat /b > /b2; date > /t2
COPY --from=tools /built /built
`, base)
}

// cacheContext is a context for cacheDockerfile whose files all have one
// mtime, as a checkout on another runner has with --source-date-epoch
// (COPY's cache key includes mtimes).
func cacheContext(t *testing.T, base string, files map[string]string) string {
	t.Helper()
	dir := writeContext(t, cacheDockerfile(base), files)
	when := time.Unix(1600000000, 0)
	for n := range files {
		must(t, os.Chtimes(filepath.Join(dir, n), when, when))
	}
	return dir
}

func cacheBuild(t *testing.T, wantOK bool, args ...string) (id, stderr string) {
	t.Helper()
	code, out, stderr := cli(append([]string{"build"}, args...)...)
	if (code == 0) != wantOK {
		t.Fatalf("build %v: exit %d:\n%s", args, code, stderr)
	}
	if code != 0 {
		return "", stderr
	}
	return lastLine(out), stderr
}

// ran lists the markers of the RUN steps that ran.
func ran(stderr string) []string {
	var out []string
	for _, m := range []string{"RAN-TOOLS", "RAN-A", "RAN-B"} {
		// The marker is printed by the RUN; the command line echoes it
		// too, after "echo ".
		if strings.Contains(strings.ReplaceAll(stderr, "echo "+m, ""), m) {
			out = append(out, m)
		}
	}
	return out
}

// TestBuildCacheRegistry: runners with empty state dirs share a build
// cache through a real registry (Debian's docker-registry).
func TestBuildCacheRegistry(t *testing.T) {
	oracle.Root(t)
	base := cacheBase(t)
	regAddr, regData := startRegistryData(t)
	proxy := newBlobProxy(t, regAddr)
	reg := proxy.addr
	ctx := cacheContext(t, base, map[string]string{"a": "one\n", "b": "two\n"})
	maxRef := reg + "/app:cache"
	minRef := reg + "/app:cache-min"

	// Runner 1 builds, pushes, then exports both caches.
	id1, stderr := cacheBuild(t, true, "--state-dir", t.TempDir(), "-t", reg+"/app:1", "--push",
		"--cache-to", "type=registry,ref="+maxRef+",mode=max", "--cache-to", "type=registry,ref="+minRef, ctx)
	if got := ran(stderr); len(got) != 3 {
		t.Fatalf("a cold build ran %v, want every RUN:\n%s", got, stderr)
	}
	puts, heads, uploads := proxy.reset()
	for d, n := range puts {
		if n != 1 {
			t.Errorf("blob %s uploaded %d times (the cache shares the image's blobs)", d, n)
		}
	}
	// The pushed image: base layers, 5 new layers, a config; then one
	// index per cache. Nothing else.
	cfg := skopeoConfig(t, "docker://"+reg+"/app:1")
	nLayers := len(cfg["rootfs"].(map[string]any)["diff_ids"].([]any))
	if want := nLayers + 1 + 2; uploads != want {
		t.Errorf("%d blob uploads, want %d (%d layers, a config, two cache indexes)", uploads, want, nLayers)
	}
	if len(heads) < 5 {
		t.Errorf("the cache export HEADed %d blobs, want the 5 layers it shares", len(heads))
	}
	raw, _ := skopeoRaw(t, "--tls-verify=false", "docker://"+maxRef)
	if raw["artifactType"] != "application/vnd.layercommit.buildcache.v1" || len(raw["layers"].([]any)) != 5 {
		t.Errorf("cache manifest: %v", raw)
	}

	for _, tc := range []struct {
		name    string
		from    []string
		edit    map[string]string
		wantRan []string
		sameID  bool
		warn    string
	}{
		{name: "identical build, mode=max", from: []string{maxRef}, sameID: true},
		{name: "identical build, mode=min: the other stage reruns", from: []string{minRef}, wantRan: []string{"RAN-TOOLS"}},
		{name: "b edited: only from COPY b on", from: []string{maxRef}, edit: map[string]string{"b": "changed\n"}, wantRan: []string{"RAN-B"}},
		{name: "a edited: from COPY a on", from: []string{maxRef}, edit: map[string]string{"a": "changed\n"}, wantRan: []string{"RAN-A", "RAN-B"}},
		{name: "missing ref first, then the cache", from: []string{reg + "/app:nothing", maxRef}, sameID: true, warn: "no build cache there"},
		{name: "not a cache: the image", from: []string{reg + "/app:1"}, wantRan: []string{"RAN-TOOLS", "RAN-A", "RAN-B"}, warn: "not a layercommit build cache"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ctx
			if tc.edit != nil {
				files := map[string]string{"a": "one\n", "b": "two\n"}
				for k, v := range tc.edit {
					files[k] = v
				}
				c = cacheContext(t, base, files)
			}
			args := []string{"--state-dir", t.TempDir(), "-o", "oci:" + filepath.Join(t.TempDir(), "out")}
			for _, f := range tc.from {
				args = append(args, "--cache-from", "type=registry,ref="+f)
			}
			id, stderr := cacheBuild(t, true, append(args, c)...)
			if got := ran(stderr); strings.Join(got, ",") != strings.Join(tc.wantRan, ",") {
				t.Errorf("ran %v, want %v:\n%s", got, tc.wantRan, stderr)
			}
			if (id == id1) != tc.sameID {
				t.Errorf("image ID %s, first build's %s: same=%v, want %v", id, id1, id == id1, tc.sameID)
			}
			if !strings.Contains(stderr, tc.warn) {
				t.Errorf("no warning %q:\n%s", tc.warn, stderr)
			}
		})
	}

	// Corrupt, then remove, the blob of the COPY a layer inside the
	// registry's storage: the step is rebuilt with a warning, never used.
	man, _ := skopeoRaw(t, "--tls-verify=false", "docker://"+maxRef)
	var layerA string
	ix := readCacheIndex(t, reg, man)
	for _, s := range ix {
		if s.layer != "" && strings.HasSuffix(s.createdBy, " in /a ") {
			layerA = s.layer
		}
	}
	if layerA == "" {
		t.Fatalf("no COPY a step in the cache index %v", ix)
	}
	blob := filepath.Join(regData, "docker/registry/v2/blobs/sha256", layerA[7:9], layerA[7:], "data")
	good, err := os.ReadFile(blob)
	must(t, err)
	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 0xff
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"corrupt blob", bad},
		{"missing blob", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.data == nil {
				must(t, os.Remove(blob))
			} else {
				must(t, os.WriteFile(blob, tc.data, 0o644))
			}
			state := t.TempDir()
			id, stderr := cacheBuild(t, true, "--state-dir", state, "-o", "oci:"+filepath.Join(t.TempDir(), "out"), "--cache-from", "type=registry,ref="+maxRef, ctx)
			if got := ran(stderr); strings.Join(got, ",") != "RAN-A,RAN-B" {
				t.Errorf("ran %v, want RAN-A,RAN-B (COPY a's blob is bad):\n%s", got, stderr)
			}
			if id == id1 {
				t.Errorf("a build over a bad blob kept the old ID")
			}
			if !strings.Contains(stderr, "[WARNING]: cache from "+maxRef+": step ") {
				t.Errorf("no warning for the bad blob:\n%s", stderr)
			}
			// The rebuilt COPY makes the same blob again; what the state
			// dir holds under that digest must be it, not the bad bytes.
			if b, err := os.ReadFile(filepath.Join(state, "blobs/sha256", layerA[7:])); err == nil && fmt.Sprintf("sha256:%x", sha256.Sum256(b)) != layerA {
				t.Errorf("the state dir holds bad bytes under %s", layerA)
			}
			if b, _ := os.ReadFile(filepath.Join(state, "blobs/sha256", layerA[7:])); !bytes.Equal(b, good) {
				t.Errorf("the rebuilt COPY a layer differs from the first build's")
			}
		})
	}
}

type indexStep struct{ key, layer, createdBy string }

// readCacheIndex fetches the cache index blob of a cache manifest.
func readCacheIndex(t *testing.T, reg string, man map[string]any) []indexStep {
	t.Helper()
	d := man["config"].(map[string]any)["digest"].(string)
	resp, err := http.Get("http://" + reg + "/v2/app/blobs/" + d)
	must(t, err)
	defer resp.Body.Close()
	var ix struct {
		Steps []struct {
			Key    string          `json:"key"`
			Config json.RawMessage `json:"config"`
			Layer  *struct {
				Digest string `json:"digest"`
			} `json:"layer"`
		} `json:"steps"`
	}
	must(t, json.NewDecoder(resp.Body).Decode(&ix))
	var out []indexStep
	for _, s := range ix.Steps {
		var cf struct {
			History []struct {
				CreatedBy string `json:"created_by"`
			} `json:"history"`
		}
		must(t, json.Unmarshal(s.Config, &cf))
		st := indexStep{key: s.Key, createdBy: cf.History[len(cf.History)-1].CreatedBy}
		if s.Layer != nil {
			st.layer = s.Layer.Digest
		}
		out = append(out, st)
	}
	return out
}

// startRegistryData is startRegistry that also returns its storage dir.
func startRegistryData(t *testing.T) (addr, data string) {
	t.Helper()
	addr = startRegistry(t)
	out, err := exec.Command("sh", "-c", "ps -eo args | grep -F 'docker-registry serve' | grep -v grep").Output()
	must(t, err)
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 {
			continue
		}
		b, err := os.ReadFile(f[2])
		if err == nil && strings.Contains(string(b), addr) {
			return addr, filepath.Join(filepath.Dir(f[2]), "data")
		}
	}
	t.Fatalf("no storage dir for registry %s", addr)
	return
}
