package layer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	digest "github.com/opencontainers/go-digest"

	"github.com/layercommit/layercommit/commit"
	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/internal/oracle"
	"github.com/layercommit/layercommit/layer"
)

// busyboxUpper is an upper dir holding a busybox root and /hello.
func busyboxUpper(t *testing.T) string {
	t.Helper()
	up := t.TempDir()
	bb, err := os.ReadFile(oracle.Tool(t, "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		os.MkdirAll(filepath.Join(up, "bin"), 0o755),
		os.WriteFile(filepath.Join(up, "bin/busybox"), bb, 0o755),
		os.Symlink("busybox", filepath.Join(up, "bin/sh")),
		os.Symlink("busybox", filepath.Join(up, "bin/cat")),
		os.WriteFile(filepath.Join(up, "hello"), []byte("lazy layers\n"), 0o644),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return up
}

// commitTo commits upper onto scratch with compression c.
func commitTo(t *testing.T, upper, to string, c layer.Compression) v1.Hash {
	t.Helper()
	id, err := commit.Commit(context.Background(), commit.CommitRequest{
		From: "scratch", To: to, Changes: diff.Overlay(upper),
		Output: commit.Output{Compression: c},
	})
	if err != nil {
		t.Fatalf("commit --compression %s to %s: %v", c, to, err)
	}
	return id
}

// ociManifest reads the one manifest of an OCI layout.
func ociManifest(t *testing.T, dir string) v1.Manifest {
	t.Helper()
	var idx v1.IndexManifest
	readJSON(t, filepath.Join(dir, "index.json"), &idx)
	if len(idx.Manifests) != 1 {
		t.Fatalf("index has %d manifests", len(idx.Manifests))
	}
	var m v1.Manifest
	readJSON(t, filepath.Join(dir, "blobs/sha256", idx.Manifests[0].Digest.Hex), &m)
	return m
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestEstargzImage commits an estargz layer to an OCI layout (checking
// the manifest's media type and annotations and verifying the blob with
// the estargz reader) and to a docker-archive that Docker 20.10 and 29
// load and run: to them it is plain gzip.
func TestEstargzImage(t *testing.T) {
	up := busyboxUpper(t)
	dir := filepath.Join(t.TempDir(), "layout")
	commitTo(t, up, "oci:"+dir+":esgz", layer.Estargz)
	m := ociManifest(t, dir)
	if len(m.Layers) != 1 {
		t.Fatalf("%d layers", len(m.Layers))
	}
	d := m.Layers[0]
	if d.MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
		t.Errorf("layer media type %s", d.MediaType)
	}
	tocDigest := d.Annotations[estargz.TOCJSONDigestAnnotation]
	if tocDigest == "" || d.Annotations[estargz.StoreUncompressedSizeAnnotation] == "" {
		t.Fatalf("layer annotations %v", d.Annotations)
	}
	f, err := os.Open(filepath.Join(dir, "blobs/sha256", d.Digest.Hex))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := estargz.Open(io.NewSectionReader(f, 0, d.Size))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.VerifyTOC(digest.Digest(tocDigest)); err != nil {
		t.Fatalf("VerifyTOC: %v", err)
	}
	if e, ok := r.Lookup("hello"); !ok || e.Size != 12 {
		t.Errorf("TOC entry for hello: %+v %v", e, ok)
	}

	archive := filepath.Join(t.TempDir(), "esgz.tar")
	tag := oracle.Tag("lc-test/estargz")
	commitTo(t, up, "docker-archive:"+archive+":"+tag, layer.Estargz)
	for _, tc := range []struct {
		name string
		new  func(testing.TB) *oracle.Docker
	}{{"docker-20.10", oracle.NewDocker}, {"docker-29", oracle.NewDocker29}} {
		t.Run(tc.name, func(t *testing.T) {
			dk := tc.new(t)
			dk.Run(t, "load", "-i", archive)
			defer dk.Try("rmi", "-f", tag)
			if out := dk.Run(t, "run", "--rm", "--network", "none", tag, "/bin/cat", "/hello"); out != "lazy layers" { // Run trims the output
				t.Errorf("docker run printed %q", out)
			}
		})
	}
}

// TestZstdChunkedImage pushes a zstd:chunked image to a private loopback
// registry, checks the manifest skopeo reads (zstd media type, the
// three annotations), copies it with skopeo and runs it with podman.
func TestZstdChunkedImage(t *testing.T) {
	skopeo := oracle.Tool(t, "skopeo")
	addr := startRegistry(t)
	up := busyboxUpper(t)
	ref := addr + "/lc-test/zchunked:v1"
	commitTo(t, up, "docker://"+ref, layer.ZstdChunked)

	out, err := exec.Command(skopeo, "inspect", "--tls-verify=false", "--raw", "docker://"+ref).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, out)
	}
	var m v1.Manifest
	if err := json.Unmarshal(out, &m); err != nil || len(m.Layers) != 1 {
		t.Fatalf("manifest %s: %v", out, err)
	}
	d := m.Layers[0]
	if d.MediaType != "application/vnd.oci.image.layer.v1.tar+zstd" {
		t.Errorf("layer media type %s", d.MediaType)
	}
	for _, k := range []string{layer.ZstdChunkedManifestChecksum, layer.ZstdChunkedManifestPosition, layer.ZstdChunkedTarSplitPosition} {
		if d.Annotations[k] == "" {
			t.Errorf("annotation %s missing: %v", k, d.Annotations)
		}
	}
	copied := filepath.Join(t.TempDir(), "copied")
	if out, err := exec.Command(skopeo, "copy", "--src-tls-verify=false", "docker://"+ref, "oci:"+copied+":v1").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}
	if got := ociManifest(t, copied).Layers[0]; got.Digest != d.Digest || got.Annotations[layer.ZstdChunkedManifestChecksum] != d.Annotations[layer.ZstdChunkedManifestChecksum] {
		t.Errorf("skopeo copied layer %+v, pushed %+v", got, d)
	}

	podman := oracle.Tool(t, "podman")
	for _, partial := range []bool{false, true} {
		name := "full-pull"
		if partial {
			name = "partial-pull"
		}
		t.Run(name, func(t *testing.T) {
			// podman refuses a runroot of more than 50 characters.
			tmp, err := os.MkdirTemp("/tmp", "lcpm")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(tmp)
			conf := filepath.Join(tmp, "storage.conf")
			body := "[storage]\ndriver = \"overlay\"\nrunroot = \"" + tmp + "/run\"\ngraphroot = \"" + tmp + "/root\"\n"
			if partial {
				body += "[storage.options]\npull_options = {enable_partial_images = \"true\", use_hard_links = \"false\"}\n"
			}
			if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			pm := func(args ...string) (string, error) {
				cmd := exec.Command(podman, append([]string{"--root", tmp + "/root", "--runroot", tmp + "/run",
					"--storage-driver", "overlay", "--cgroup-manager", "cgroupfs", "--events-backend", "file"}, args...)...)
				cmd.Env = append(os.Environ(), "CONTAINERS_STORAGE_CONF="+conf)
				out, err := cmd.CombinedOutput()
				return string(out), err
			}
			defer pm("system", "reset", "-f")
			if out, err := pm("pull", "--tls-verify=false", ref); err != nil {
				t.Fatalf("podman pull: %v\n%s", err, out)
			}
			out, err := pm("run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096", ref, "/bin/cat", "/hello")
			if err != nil || !strings.HasSuffix(out, "lazy layers\n") {
				t.Fatalf("podman run: %v\n%s", err, out)
			}
		})
	}
}

// startRegistry runs Debian's docker-registry on a free loopback port
// with storage in a temp dir, and returns its host:port.
func startRegistry(t *testing.T) string {
	t.Helper()
	bin := oracle.Tool(t, "docker-registry")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfg)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
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
