package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/layercommit/layercommit/export"
	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/internal/oracle"
)

// lc runs layercommit in-process. It fails the test on a non-zero exit
// unless wantErr, and returns the last stdout line and stderr.
func lc(t *testing.T, wantErr bool, args ...string) (string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	if (code != 0) != wantErr {
		t.Fatalf("layercommit %s: exit %d, stderr %q", strings.Join(args, " "), code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	return lines[len(lines)-1], errb.String()
}

const testCreated = "2024-05-06T07:08:09Z"

// commitUppers builds two upper dirs for a two-step commit onto the
// busybox base: stage1 adds /app/old1 and /app/old2; stage2, made through
// a real overlay mount over a tree like stage1's result, modifies
// /data/basefile, deletes /etc/group, replaces /app (opaque) and adds
// /new.txt and /newdir.
func commitUppers(t *testing.T) (stage1, stage2 string) {
	t.Helper()
	dir := t.TempDir()
	stage1 = filepath.Join(dir, "stage1")
	must(t, fixtures.Apply(stage1,
		fixtures.CreateDir("app", 0o755),
		fixtures.CreateFile("app/old1", []byte("old one\n"), 0o644),
		fixtures.CreateFile("app/old2", []byte("old two\n"), 0o644)))
	lower := filepath.Join(dir, "lower")
	must(t, fixtures.Apply(lower,
		fixtures.CreateDir("data", 0o755), fixtures.CreateFile("data/basefile", []byte("base file\n"), 0o644),
		fixtures.CreateDir("etc", 0o755), fixtures.CreateFile("etc/group", []byte("root:x:0:\n"), 0o644),
		fixtures.CreateDir("app", 0o755), fixtures.CreateFile("app/old1", nil, 0o644), fixtures.CreateFile("app/old2", nil, 0o644)))
	ov, err := fixtures.MountOverlay([]string{lower}, filepath.Join(dir, "stage2"), filepath.Join(dir, "work"), filepath.Join(dir, "merged"))
	must(t, err)
	err = fixtures.Apply(ov.Merged,
		fixtures.CreateFile("data/basefile", []byte("changed\n"), 0o644),
		fixtures.Remove("etc/group"),
		fixtures.Remove("app"),
		fixtures.CreateDir("app", 0o755),
		fixtures.CreateFile("app/fresh", []byte("fresh\n"), 0o644),
		fixtures.CreateFile("new.txt", []byte("new\n"), 0o644),
		fixtures.CreateDir("newdir", 0o700))
	must(t, ov.Unmount())
	must(t, err)
	return stage1, ov.Upper
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var (
	baseOnce    sync.Once
	baseArchive string
	baseErr     error
)

// busyboxArchive saves the oracle's base image once per test binary.
func busyboxArchive(t *testing.T, d *oracle.Docker) string {
	t.Helper()
	baseOnce.Do(func() {
		dir, err := os.MkdirTemp("", "layercommit-base-")
		if err != nil {
			baseErr = err
			return
		}
		baseArchive = filepath.Join(dir, "base.tar")
		_, stderr, err := d.Try("save", "-o", baseArchive, d.Base)
		if err != nil {
			baseErr = fmt.Errorf("docker save: %v: %s", err, stderr)
		}
	})
	if baseErr != nil {
		t.Fatal(baseErr)
	}
	return baseArchive
}

// checkImage reads ref back through export and runs ggcr's validate.Image.
func checkImage(t *testing.T, ref string) v1.Image {
	t.Helper()
	img, err := export.Open(t.Context(), ref)
	if err != nil {
		t.Fatalf("reading %s back: %v", ref, err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("validate.Image(%s): %v", ref, err)
	}
	return img
}

func TestCommitOCILayoutPeers(t *testing.T) {
	oracle.Root(t)
	skopeo := oracle.Tool(t, "skopeo")
	umoci := oracle.Tool(t, "umoci")
	stage1, stage2 := commitUppers(t)
	dir := filepath.Join(t.TempDir(), "layout")
	id1, _ := lc(t, false, "commit", "-q", "--upper", stage1, "--created", testCreated, "-c", "CMD [\"/bin/sh\"]", "-o", "oci:"+dir+":v1")
	id2, _ := lc(t, false, "commit", "-q", "--from", "oci:"+dir+":v1", "--upper", stage2, "--created", testCreated, "-m", "stage two", "-a", "tester", "-o", "oci:"+dir+":v2")
	for _, id := range []string{id1, id2} {
		if !strings.HasPrefix(id, "sha256:") || len(id) != 71 {
			t.Fatalf("last line %q is not an image ID", id)
		}
	}
	img := checkImage(t, "oci:"+dir+":v2")
	if got, _ := img.ConfigName(); got.String() != id2 {
		t.Fatalf("image ID %s, printed %s", got, id2)
	}
	cf, _ := img.ConfigFile()
	if n := len(cf.RootFS.DiffIDs); n != 2 || len(cf.History) != 2 || cf.History[1].Comment != "stage two" || cf.History[1].Author != "tester" || cf.History[1].CreatedBy != "/bin/sh" {
		t.Fatalf("config: %d diffIDs, history %+v", n, cf.History)
	}
	// The earlier tag is still there and readable.
	checkImage(t, "oci:"+dir+":v1")

	// skopeo reads the layout and sees our layers.
	out, err := exec.Command(skopeo, "inspect", "oci:"+dir+":v2").CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, out)
	}
	var si struct {
		Digest string
		Layers []string
	}
	must(t, json.Unmarshal(out, &si))
	m, _ := img.Manifest()
	dg, _ := img.Digest()
	if si.Digest != dg.String() || len(si.Layers) != 2 || si.Layers[1] != m.Layers[1].Digest.String() {
		t.Fatalf("skopeo sees %+v, we wrote %s with layers %v", si, dg, m.Layers)
	}

	// umoci unpacks it and the change set is applied.
	bundle := filepath.Join(t.TempDir(), "bundle")
	if out, err := exec.Command(umoci, "unpack", "--image", dir+":v2", bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}
	rootfs := filepath.Join(bundle, "rootfs")
	assertFile(t, filepath.Join(rootfs, "data/basefile"), "changed\n")
	assertFile(t, filepath.Join(rootfs, "app/fresh"), "fresh\n")
	assertFile(t, filepath.Join(rootfs, "new.txt"), "new\n")
	assertMissing(t, filepath.Join(rootfs, "app/old1"))
	assertMissing(t, filepath.Join(rootfs, "etc/group"))

	// Committing the same thing again adds no blob and keeps one entry per tag.
	before := blobNames(t, dir)
	again, _ := lc(t, false, "commit", "-q", "--from", "oci:"+dir+":v1", "--upper", stage2, "--created", testCreated, "-m", "stage two", "-a", "tester", "-o", "oci:"+dir+":v2")
	if again != id2 {
		t.Fatalf("same commit gave %s, then %s", id2, again)
	}
	if after := blobNames(t, dir); after != before {
		t.Fatalf("blobs changed on an identical commit:\n%s\n%s", before, after)
	}
	var idx v1.IndexManifest
	b, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	must(t, json.Unmarshal(b, &idx))
	if len(idx.Manifests) != 2 {
		t.Fatalf("index holds %d manifests, want 2 (v1, v2)", len(idx.Manifests))
	}
	// inspect prints the chain.
	var out2 bytes.Buffer
	if code := run([]string{"inspect", "--json", "oci:" + dir + ":v2"}, &out2, &out2); code != 0 {
		t.Fatalf("inspect: %s", out2.String())
	}
	var io inspectOutput
	must(t, json.Unmarshal(out2.Bytes(), &io))
	if io.ID.String() != id2 || len(io.Layers) != 2 || io.Layers[1].ChainID == io.Layers[1].DiffID {
		t.Fatalf("inspect: %+v", io)
	}
}

func assertFile(t *testing.T, p, want string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil || string(b) != want {
		t.Fatalf("%s: %q, %v; want %q", p, b, err, want)
	}
}

func assertMissing(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); err == nil {
		t.Fatalf("%s exists, want it deleted", p)
	}
}

func blobNames(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	must(t, err)
	var n []string
	for _, e := range ents {
		n = append(n, e.Name())
	}
	return strings.Join(n, " ")
}

func TestCommitDockerArchiveLoadAndRun(t *testing.T) {
	d := oracle.NewDocker(t)
	base := busyboxArchive(t, d)
	stage1, stage2 := commitUppers(t)
	dir := t.TempDir()
	a1, a2 := filepath.Join(dir, "one.tar"), filepath.Join(dir, "two.tar")
	lc(t, false, "commit", "-q", "--from", "docker-archive:"+base, "--upper", stage1, "-c", `CMD ["/bin/sh"]`, "-o", "docker-archive:"+a1)
	name := oracle.Tag("lc-test/archive")
	id, _ := lc(t, false, "commit", "-q", "--from", "docker-archive:"+a1, "--upper", stage2, "-c", "ENV STAGE=2", "-o", "docker-archive:"+a2+":"+name)
	checkImage(t, "docker-archive:"+a2)
	t.Cleanup(func() { d.Try("rmi", "-f", name) })
	d.Run(t, "load", "-i", a2)
	if got := d.Run(t, "image", "inspect", "-f", "{{.Id}}", name); got != id {
		t.Fatalf("docker loaded %s, we made %s", got, id)
	}
	out := d.Run(t, "run", "--rm", "--network", "none", name, "sh", "-c",
		`cat /data/basefile; ls /app; ls /etc/group 2>&1 || true; cat /new.txt; test -d /newdir && echo newdir; echo $STAGE; ls /bin/busybox`)
	want := "changed\nfresh\nls: /etc/group: No such file or directory\nnew\nnewdir\n2\n/bin/busybox"
	if out != want {
		t.Fatalf("docker run shows:\n%s\nwant:\n%s", out, want)
	}
	// The last diffID is what `layercommit diff` gives for the upper dir.
	layers := d.Run(t, "image", "inspect", "-f", "{{range .RootFS.Layers}}{{.}} {{end}}", name)
	fields := strings.Fields(layers)
	diffOut, _ := lc(t, false, "diff", "-o", filepath.Join(dir, "layer.tar"), stage2)
	if len(fields) != 3 || fields[2] != diffOut {
		t.Fatalf("docker sees layers %v; layercommit diff says %s", fields, diffOut)
	}
}

// startRegistry runs Debian's docker-registry on a free loopback port
// with storage in a temp dir, and returns its host:port.
func startRegistry(t *testing.T) string {
	t.Helper()
	bin := oracle.Tool(t, "docker-registry")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)), 0o644))
	cmd := exec.Command(bin, "serve", cfg)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	must(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		if resp, err := http.Get("http://" + addr + "/v2/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return addr
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("docker-registry did not start: %s", logs.String())
	return ""
}

// countingProxy sits in front of a registry, counts blob uploads begun and
// can refuse them.
type countingProxy struct {
	uploads atomic.Int64
	refuse  atomic.Bool
	addr    string
}

func newCountingProxy(t *testing.T, registry string) *countingProxy {
	t.Helper()
	p := &countingProxy{}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: registry})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/") {
			if p.refuse.Load() {
				http.Error(w, `{"errors":[{"code":"DENIED","message":"pushes refused by test"}]}`, http.StatusForbidden)
				return
			}
			p.uploads.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.addr = strings.TrimPrefix(srv.URL, "http://")
	return p
}

func TestCommitRegistryPushPull(t *testing.T) {
	d := oracle.NewDocker(t)
	skopeo := oracle.Tool(t, "skopeo")
	base := busyboxArchive(t, d)
	_, stage2 := commitUppers(t)
	proxy := newCountingProxy(t, startRegistry(t))
	ref := proxy.addr + "/lc-test/pushed:v1"
	args := []string{"commit", "-q", "--from", "docker-archive:" + base, "--upper", stage2, "--created", testCreated, "-o", "docker://" + ref}
	id, _ := lc(t, false, args...)
	if n := proxy.uploads.Load(); n != 3 {
		t.Fatalf("first push began %d blob uploads, want 3 (base layer, new layer, config)", n)
	}
	img := checkImage(t, "docker://"+ref)
	dg, _ := img.Digest()
	if got, _ := img.ConfigName(); got.String() != id {
		t.Fatalf("registry holds config %s, we printed %s", got, id)
	}
	out, err := exec.Command(skopeo, "inspect", "--tls-verify=false", "docker://"+ref).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, out)
	}
	var si struct{ Digest string }
	must(t, json.Unmarshal(out, &si))
	if si.Digest != dg.String() {
		t.Fatalf("skopeo sees %s, we pushed %s", si.Digest, dg)
	}
	// Pushing the same image again sends no blob.
	lc(t, false, args...)
	if n := proxy.uploads.Load(); n != 3 {
		t.Fatalf("second push began %d more blob uploads, want 0", n-3)
	}
	// docker pull gets the same digests and image ID.
	t.Cleanup(func() { d.Try("rmi", "-f", ref) })
	d.Run(t, "pull", "-q", ref)
	if got := d.Run(t, "image", "inspect", "-f", "{{.Id}} {{index .RepoDigests 0}}", ref); got != id+" "+proxy.addr+"/lc-test/pushed@"+dg.String() {
		t.Fatalf("docker pulled %q, want %s and %s", got, id, dg)
	}
	if out := d.Run(t, "run", "--rm", "--network", "none", ref, "cat", "/new.txt"); out != "new" {
		t.Fatalf("docker run of the pulled image: %q", out)
	}

	// A registry refusing the push: a one-line error, and the old tag stays.
	proxy.refuse.Store(true)
	_, stderr := lc(t, true, "commit", "-q", "--from", "docker-archive:"+base, "--upper", stage2, "-o", "docker://"+ref)
	assertCommitError(t, stderr, "pushes refused by test")
	if got := checkImage(t, "docker://"+ref); mustDigest(t, got) != dg {
		t.Fatalf("refused push changed the tag")
	}
}

func mustDigest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	dg, err := img.Digest()
	must(t, err)
	return dg
}

func assertCommitError(t *testing.T, stderr, want string) {
	t.Helper()
	if !strings.HasPrefix(stderr, "layercommit: ") || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, want) {
		t.Fatalf("stderr %q: want one line starting layercommit: and containing %q", stderr, want)
	}
}
