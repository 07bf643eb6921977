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
	mounts  int // POST /blobs/uploads/?mount=...&from=... (cross-repository)
	addr    string
}

func newBlobProxy(t *testing.T, registry string) *blobProxy {
	t.Helper()
	p := &blobProxy{puts: map[string]int{}, heads: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: registry})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/") {
			// 201 is a blob mounted from another repository; 202 an
			// upload begun (also after a mount that could not be done).
			sw := &statusWriter{ResponseWriter: w}
			rp.ServeHTTP(sw, r)
			p.mu.Lock()
			if sw.status == http.StatusCreated && r.URL.Query().Get("mount") != "" {
				p.mounts++
			} else {
				p.uploads++
				if d := r.URL.Query().Get("digest"); d != "" {
					p.puts[d]++
				}
			}
			p.mu.Unlock()
			return
		}
		p.mu.Lock()
		switch {
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

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (p *blobProxy) reset() (puts, heads map[string]int, uploads, mounts int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	puts, heads, uploads, mounts = p.puts, p.heads, p.uploads, p.mounts
	p.puts, p.heads, p.uploads, p.mounts = map[string]int{}, map[string]int{}, 0, 0
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
	puts, heads, uploads, _ := proxy.reset()
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
	// A cache in another repository of the same registry mounts the
	// pushed image's blobs (?mount=&from=) instead of uploading them.
	cacheBuild(t, true, "--state-dir", t.TempDir(), "-t", reg+"/app:2", "--push", "--source-date-epoch", "0",
		"--cache-to", "type=registry,ref="+reg+"/cache/app:main,mode=max", ctx)
	_, _, uploads, mounts := proxy.reset()
	// The image: 5 new layers (new times) and a config; the cache: its
	// index; its 5 layers come by mount.
	if uploads != 5+1+1 || mounts != 5 {
		t.Errorf("push then cache export to another repository: %d uploads, %d mounts; want 7 and 5", uploads, mounts)
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

// TestBuildCacheConcurrentExport: two runners export different caches to
// one ref at once; both finish, and the ref then holds one of the two
// whole (a fresh runner rebuilds one of the two images without a RUN).
func TestBuildCacheConcurrentExport(t *testing.T) {
	oracle.Root(t)
	base := cacheBase(t)
	reg := startRegistry(t)
	ref := reg + "/app:cache"
	ctxs := []string{
		cacheContext(t, base, map[string]string{"a": "one\n", "b": "first\n"}),
		cacheContext(t, base, map[string]string{"a": "one\n", "b": "second\n"}),
	}
	iids := []string{filepath.Join(t.TempDir(), "iid0"), filepath.Join(t.TempDir(), "iid1")}
	res := runAll(t, []string{"0", "1"}, func(i int, _ string) []string {
		return []string{"build", "--state-dir", t.TempDir(), "--iidfile", iids[i], "-o", "oci:" + filepath.Join(t.TempDir(), "out"),
			"--cache-to", "type=registry,ref=" + ref + ",mode=max", ctxs[i]}
	})
	for i, r := range res {
		if r.err != nil {
			t.Fatalf("runner %d: %v:\n%s", i, r.err, r.stderr)
		}
	}
	whole := -1
	for i, c := range ctxs {
		want, err := os.ReadFile(iids[i])
		must(t, err)
		id, stderr := cacheBuild(t, true, "--state-dir", t.TempDir(), "-o", "oci:"+filepath.Join(t.TempDir(), "out"), "--cache-from", ref, c)
		if len(ran(stderr)) == 0 {
			if id != string(want) {
				t.Errorf("runner %d's build from the cache gave %s, want %s", i, id, want)
			}
			whole = i
		}
	}
	if whole < 0 {
		t.Fatalf("the ref holds neither cache whole")
	}
}

// TestBuildCacheLocal: type=local round trip, a forged entry refused,
// and bad specs refused before anything is written.
func TestBuildCacheLocal(t *testing.T) {
	oracle.Root(t)
	base := cacheBase(t)
	ctx := cacheContext(t, base, map[string]string{"a": "one\n", "b": "two\n"})
	dir := filepath.Join(t.TempDir(), "cache")
	id1, _ := cacheBuild(t, true, "--state-dir", t.TempDir(), "-o", "oci:"+filepath.Join(t.TempDir(), "out"), "--cache-to", "type=local,dest="+dir+",mode=max", ctx)
	id, stderr := cacheBuild(t, true, "--state-dir", t.TempDir(), "-o", "oci:"+filepath.Join(t.TempDir(), "out"), "--cache-from", "type=local,src="+dir, ctx)
	if id != id1 || len(ran(stderr)) != 0 {
		t.Fatalf("from a local cache: %s (want %s), ran %v:\n%s", id, id1, ran(stderr), stderr)
	}

	// A fresh checkout (new mtimes) shares every step when the build
	// clamps times with --source-date-epoch, as CI does.
	epochDir := filepath.Join(t.TempDir(), "epoch")
	id1, _ = cacheBuild(t, true, "--state-dir", t.TempDir(), "--source-date-epoch", "1000", "-o", "oci:"+filepath.Join(t.TempDir(), "out"), "--cache-to", "type=local,dest="+epochDir+",mode=max", ctx)
	fresh := writeContext(t, cacheDockerfile(base), map[string]string{"a": "one\n", "b": "two\n"})
	id, stderr = cacheBuild(t, true, "--state-dir", t.TempDir(), "--source-date-epoch", "1000", "-o", "oci:"+filepath.Join(t.TempDir(), "out"), "--cache-from", "type=local,src="+epochDir, fresh)
	if id != id1 || len(ran(stderr)) != 0 {
		t.Fatalf("a fresh checkout with --source-date-epoch: %s (want %s), ran %v:\n%s", id, id1, ran(stderr), stderr)
	}

	// Forge the cache: RUN A's key now maps to RUN B's config and layer
	// (all digests right). The builder refuses it: its parent is not
	// RUN A's parent.
	forged := filepath.Join(t.TempDir(), "forged")
	must(t, exec.Command("cp", "-a", dir, forged).Run())
	forgeLocalCache(t, forged, func(steps []map[string]any) {
		var a, b int
		for i, s := range steps {
			h := s["config"].(map[string]any)["history"].([]any)
			switch last := h[len(h)-1].(map[string]any)["created_by"].(string); {
			case strings.Contains(last, "RAN-A"):
				a = i
			case strings.Contains(last, "RAN-B"):
				b = i
			}
		}
		steps[a]["config"], steps[a]["layer"] = steps[b]["config"], steps[b]["layer"]
	})
	_, stderr = cacheBuild(t, true, "--state-dir", t.TempDir(), "-o", "oci:"+filepath.Join(t.TempDir(), "out"), "--cache-from", "type=local,src="+forged, ctx)
	if got := ran(stderr); strings.Join(got, ",") != "RAN-A,RAN-B" || !strings.Contains(stderr, "not used: its parent is") {
		t.Errorf("a forged entry: ran %v, want RAN-A,RAN-B and a warning:\n%s", got, stderr)
	}

	out := filepath.Join(t.TempDir(), "never")
	state := filepath.Join(t.TempDir(), "state")
	for _, tc := range []struct {
		name, flag, val, want string
	}{
		{"unknown type", "--cache-to", "type=s3,ref=x", `layercommit: bad --cache-to "type=s3,ref=x": unsupported type "s3" (registry or local)` + "\n"},
		{"registry without ref", "--cache-to", "type=registry", `layercommit: bad --cache-to "type=registry": type=registry needs ref=REF` + "\n"},
		{"bad mode", "--cache-to", "type=registry,ref=r/x,mode=mid", `layercommit: bad --cache-to "type=registry,ref=r/x,mode=mid": mode must be min or max` + "\n"},
		{"src on cache-to", "--cache-to", "type=local,src=/d", `layercommit: bad --cache-to "type=local,src=/d": src= is for --cache-from (use dest=)` + "\n"},
		{"dest on cache-from", "--cache-from", "type=local,dest=/d", `layercommit: bad --cache-from "type=local,dest=/d": dest= is for --cache-to (use src=)` + "\n"},
		{"mode on cache-from", "--cache-from", "type=registry,ref=r/x,mode=max", `layercommit: bad --cache-from "type=registry,ref=r/x,mode=max": mode= is for --cache-to` + "\n"},
		{"unknown key", "--cache-from", "type=registry,ref=r/x,scope=y", `layercommit: bad --cache-from "type=registry,ref=r/x,scope=y": unknown key "scope"` + "\n"},
		{"local without dir", "--cache-from", "type=local", `layercommit: bad --cache-from "type=local": type=local needs src=DIR` + "\n"},
		{"no type", "--cache-from", "ref=r/x", `layercommit: bad --cache-from "ref=r/x": type= missing (registry or local)` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := cli("build", "--state-dir", state, "-o", "oci:"+out, tc.flag, tc.val, ctx)
			if code == 0 || stderr != tc.want {
				t.Errorf("exit %d, stderr %q, want %q", code, stderr, tc.want)
			}
			for _, p := range []string{out, state} {
				if _, err := os.Stat(p); err == nil {
					t.Errorf("%s written", p)
				}
			}
		})
	}
}

// forgeLocalCache rewrites the cache index of a type=local cache dir
// with edit, re-deriving every digest so that only the builder's own
// checks can tell.
func forgeLocalCache(t *testing.T, dir string, edit func([]map[string]any)) {
	t.Helper()
	readJSON := func(p string, v any) { b, err := os.ReadFile(p); must(t, err); must(t, json.Unmarshal(b, v)) }
	blob := func(d string) string { return filepath.Join(dir, "blobs/sha256", strings.TrimPrefix(d, "sha256:")) }
	put := func(v any) (string, int) {
		b, err := json.Marshal(v)
		must(t, err)
		d := fmt.Sprintf("sha256:%x", sha256.Sum256(b))
		must(t, os.WriteFile(blob(d), b, 0o644))
		return d, len(b)
	}
	var ix map[string]any
	readJSON(filepath.Join(dir, "index.json"), &ix)
	md := ix["manifests"].([]any)[0].(map[string]any)
	var man map[string]any
	readJSON(blob(md["digest"].(string)), &man)
	var cix struct {
		SchemaVersion int              `json:"schemaVersion"`
		Steps         []map[string]any `json:"steps"`
	}
	readJSON(blob(man["config"].(map[string]any)["digest"].(string)), &cix)
	edit(cix.Steps)
	d, n := put(cix)
	man["config"].(map[string]any)["digest"], man["config"].(map[string]any)["size"] = d, n
	d, n = put(man)
	md["digest"], md["size"] = d, n
	b, err := json.Marshal(ix)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "index.json"), b, 0o644))
}
