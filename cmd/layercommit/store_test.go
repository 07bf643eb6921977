package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/layercommit/layercommit/export"
	"github.com/layercommit/layercommit/internal/oracle"
	"github.com/layercommit/layercommit/statedir"
)

// storeRegistry is the loopback registry scripts/oracles.sh runs.
func storeRegistry(t *testing.T) string {
	t.Helper()
	r := os.Getenv("LAYERCOMMIT_REGISTRY")
	if r == "" {
		oracle.Missing(t, "no loopback registry: source scripts/oracles.sh and run oracles_up")
	}
	return r
}

// skopeoRaw is `skopeo inspect --raw REF` and the sha256 of its bytes.
func skopeoRaw(t *testing.T, args ...string) (map[string]any, string) {
	t.Helper()
	out, err := exec.Command(oracle.Tool(t, "skopeo"), append([]string{"inspect", "--raw"}, args...)...).Output()
	if err != nil {
		t.Fatalf("skopeo inspect --raw %v: %v", args, err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m, fmt.Sprintf("sha256:%x", sha256.Sum256(out))
}

func skopeoConfig(t *testing.T, ref string) map[string]any {
	t.Helper()
	out, err := exec.Command(oracle.Tool(t, "skopeo"), "inspect", "--config", "--tls-verify=false", ref).Output()
	if err != nil {
		t.Fatalf("skopeo inspect --config %s: %v", ref, err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func storeImages(t *testing.T, state string) []export.StoreImage {
	t.Helper()
	code, out, stderr := cli("images", "--state-dir", state, "--json")
	if code != 0 {
		t.Fatalf("images: %s", stderr)
	}
	var imgs []export.StoreImage
	if err := json.Unmarshal([]byte(out), &imgs); err != nil {
		t.Fatal(err)
	}
	return imgs
}

// names maps each stored name to its image ID.
func names(imgs []export.StoreImage) map[string]string {
	m := map[string]string{}
	for _, im := range imgs {
		for _, n := range im.Names {
			m[n] = im.ID.String()
		}
	}
	return m
}

func lastLine(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return l[len(l)-1]
}

func writeContext(t *testing.T, dockerfile string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	files["Dockerfile"] = dockerfile
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestStoreRoundTrip: build into the store (no destination) with tags,
// labels, annotations and metadata files; tag, push, rmi, pull, and build
// FROM a store name; every digest is checked against skopeo.
func TestStoreRoundTrip(t *testing.T) {
	oracle.Root(t)
	reg := storeRegistry(t)
	run := fmt.Sprint(time.Now().UnixNano())
	state, tmp := t.TempDir(), t.TempDir()
	ctx := writeContext(t, "FROM scratch\nCOPY f /f\n", map[string]string{"f": "data\n"})
	iid, meta := filepath.Join(tmp, "iid"), filepath.Join(tmp, "meta.json")

	// The README's main job needs no destination: untagged, ID printed.
	code, out, stderr := cli("build", "-q", "--state-dir", state, ctx)
	if code != 0 {
		t.Fatalf("build with no -o: %s", stderr)
	}
	untagged := lastLine(out)
	if imgs := storeImages(t, state); len(imgs) != 1 || imgs[0].ID.String() != untagged || len(imgs[0].Names) != 0 {
		t.Fatalf("after an untagged build the store holds %+v, want %s untagged", imgs, untagged)
	}

	code, out, stderr = cli("build", "-q", "--state-dir", state, "-t", "app", "--tag", "app:v1",
		"--label", "org.example.team=store", "--annotation", "org.example.note=hello",
		"--annotation", "manifest:org.example.two=2", "--annotation", "manifest[linux/s390x]:org.example.other=no",
		"--iidfile", iid, "--metadata-file", meta, ctx)
	if code != 0 {
		t.Fatalf("build -t: %s", stderr)
	}
	id := lastLine(out)
	if b, _ := os.ReadFile(iid); string(b) != id {
		t.Errorf("--iidfile holds %q, want %s", b, id)
	}
	var md map[string]any
	if b, err := os.ReadFile(meta); err != nil || json.Unmarshal(b, &md) != nil {
		t.Fatalf("--metadata-file: %v", err)
	}
	layoutRef := "oci:" + statedir.ImagesDir(state) + ":docker.io/library/app:latest"
	raw, digest := skopeoRaw(t, layoutRef)
	desc, _ := md["containerimage.descriptor"].(map[string]any)
	for key, want := range map[string]any{
		"containerimage.digest":        digest,
		"containerimage.config.digest": id,
		"image.name":                   "docker.io/library/app:latest,docker.io/library/app:v1",
	} {
		if md[key] != want {
			t.Errorf("metadata %s = %v, want %v", key, md[key], want)
		}
	}
	if desc["digest"] != digest || desc["mediaType"] != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("metadata descriptor %v, want the manifest %s", desc, digest)
	}
	anns, _ := raw["annotations"].(map[string]any)
	if anns["org.example.note"] != "hello" || anns["org.example.two"] != "2" || anns["org.example.other"] != nil {
		t.Errorf("manifest annotations %v", anns)
	}
	if cfg := skopeoConfig(t, layoutRef); fmt.Sprint(cfg["config"].(map[string]any)["Labels"]) != "map[org.example.team:store]" {
		t.Errorf("config labels %v", cfg["config"])
	}

	// tag, and the names docker would show.
	if code, _, stderr := cli("tag", "--state-dir", state, "app:v1", "example.com/team/app:v2"); code != 0 {
		t.Fatalf("tag: %s", stderr)
	}
	want := map[string]string{"docker.io/library/app:latest": id, "docker.io/library/app:v1": id, "example.com/team/app:v2": id}
	if got := names(storeImages(t, state)); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("names %v, want %v", got, want)
	}
	short := strings.TrimPrefix(id, "sha256:")[:12]
	if _, out, _ := cli("images", "--state-dir", state); !regexp.MustCompile(`(?m)^app +v1 +`+short+` `).MatchString(out) ||
		!regexp.MustCompile(`(?m)^example.com/team/app +v2 +`+short+` `).MatchString(out) {
		t.Errorf("images table:\n%s", out)
	}

	// push, then the registry holds the same manifest.
	remote := reg + "/storetest/app:" + run
	if code, _, stderr := cli("push", "--state-dir", state, "app", remote); code != 0 {
		t.Fatalf("push: %s", stderr)
	}
	if _, d := skopeoRaw(t, "--tls-verify=false", "docker://"+remote); d != digest {
		t.Errorf("pushed manifest %s, want %s", d, digest)
	}

	// rmi every name and the untagged one: the store's blobs are gone.
	code, out, stderr = cli("rmi", "--state-dir", state, "app", "app:v1", "example.com/team/app:v2", untagged[:19])
	if code != 0 || !strings.Contains(out, "Deleted: "+id) || !strings.Contains(out, "Deleted: "+untagged) {
		t.Fatalf("rmi: exit %d\n%s%s", code, out, stderr)
	}
	if imgs := storeImages(t, state); len(imgs) != 0 {
		t.Errorf("after rmi the store holds %+v", imgs)
	}
	if ents, _ := os.ReadDir(filepath.Join(statedir.ImagesDir(state), "blobs", "sha256")); len(ents) != 0 {
		t.Errorf("after rmi %d blobs are left", len(ents))
	}

	// pull it back under a name; FROM that name then uses the store.
	code, out, stderr = cli("pull", "--state-dir", state, remote, "base:1")
	if code != 0 || lastLine(out) != id {
		t.Fatalf("pull: exit %d, %q, want %s: %s", code, out, id, stderr)
	}
	on := writeContext(t, "FROM base:1\nCOPY g /g\n", map[string]string{"g": "more\n"})
	code, out, stderr = cli("build", "-q", "--state-dir", state, "-t", "child", on)
	if code != 0 {
		t.Fatalf("build FROM a store name: %s", stderr)
	}
	child := "oci:" + statedir.ImagesDir(state) + ":docker.io/library/child:latest"
	craw, _ := skopeoRaw(t, child)
	if ls := craw["layers"].([]any); len(ls) != 2 || ls[0].(map[string]any)["digest"] != raw["layers"].([]any)[0].(map[string]any)["digest"] {
		t.Errorf("child layers %v do not start with the base's", ls)
	}
	// commit --from a store name, -t into the store, --iidfile.
	upper := t.TempDir()
	os.WriteFile(filepath.Join(upper, "h"), []byte("h"), 0o644)
	ciid := filepath.Join(tmp, "commit.iid")
	code, out, stderr = cli("commit", "--state-dir", state, "--from", "child", "--upper", upper, "-t", "committed", "-t", "committed:2", "--iidfile", ciid)
	if code != 0 {
		t.Fatalf("commit -t: %s", stderr)
	}
	if b, _ := os.ReadFile(ciid); string(b) != lastLine(out) || names(storeImages(t, state))["docker.io/library/committed:2"] != lastLine(out) {
		t.Errorf("commit: iidfile %q, store %v, want %s", b, names(storeImages(t, state)), lastLine(out))
	}
}

// TestBuildPush: --push sends every -t name to its registry (and stores
// nothing); the metadata names the pushed manifest; dockerd pulls and
// runs it.
func TestBuildPush(t *testing.T) {
	oracle.Root(t)
	reg := storeRegistry(t)
	d := oracle.NewDocker(t)
	run := fmt.Sprint(time.Now().UnixNano())
	state, meta := t.TempDir(), filepath.Join(t.TempDir(), "meta.json")
	// A plain name not in the store nor a build context is pulled.
	ctx := writeContext(t, "FROM "+reg+"/layercommit-base:busybox\nRUN echo pushed > /ok\nCMD [\"cat\", \"/ok\"]\n", map[string]string{})
	refs := []string{reg + "/storetest/pushed:" + run, reg + "/storetest/pushed2:" + run}
	code, out, stderr := cli("build", "-q", "--state-dir", state, "--push", "-t", refs[0], "-t", refs[1], "--metadata-file", meta, ctx)
	if code != 0 {
		t.Fatalf("build --push: %s", stderr)
	}
	var md map[string]any
	b, _ := os.ReadFile(meta)
	if err := json.Unmarshal(b, &md); err != nil {
		t.Fatal(err)
	}
	for _, r := range refs {
		if _, dg := skopeoRaw(t, "--tls-verify=false", "docker://"+r); dg != md["containerimage.digest"] {
			t.Errorf("%s is %s, metadata says %v", r, dg, md["containerimage.digest"])
		}
	}
	if md["containerimage.config.digest"] != lastLine(out) || md["image.name"] != strings.Join(refs, ",") {
		t.Errorf("metadata %v", md)
	}
	if imgs := storeImages(t, state); len(imgs) != 0 {
		t.Errorf("--push stored %+v", imgs)
	}
	d.Run(t, "pull", refs[0])
	defer d.Try("rmi", refs[0])
	if got := d.Run(t, "run", "--rm", refs[0]); got != "pushed" {
		t.Errorf("docker run of the pushed image printed %q", got)
	}
}

// TestStoreBadInput: one line, non-zero exit, nothing written (no
// iidfile, the store's index unchanged).
func TestStoreBadInput(t *testing.T) {
	oracle.Root(t)
	state := t.TempDir()
	ctx := writeContext(t, "FROM scratch\nCOPY f /f\n", map[string]string{"f": "x"})
	if code, _, stderr := cli("build", "-q", "--state-dir", state, "-t", "app", ctx); code != 0 {
		t.Fatal(stderr)
	}
	index := filepath.Join(statedir.ImagesDir(state), "index.json")
	before, _ := os.ReadFile(index)
	iid := filepath.Join(t.TempDir(), "iid")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad -t name", []string{"build", "-t", "App", "--iidfile", iid, ctx}, `layercommit: bad -t: bad image name "App": invalid reference format: repository name (library/App) must be lowercase`},
		{"-t with a digest", []string{"build", "-t", "app@sha256:" + strings.Repeat("a", 64), ctx}, `layercommit: bad -t: bad image name "app@sha256:` + strings.Repeat("a", 64) + `": a name to store takes a tag, not a digest`},
		{"--push without -t", []string{"build", "--push", "--iidfile", iid, ctx}, "layercommit: --push needs -t NAME (the registry reference to push to)"},
		{"index annotation", []string{"build", "--annotation", "index:a=b", "--iidfile", iid, ctx}, `layercommit: bad --annotation "index:a=b": index annotations not supported for single platform export`},
		{"unknown annotation type", []string{"build", "--annotation", "blob:a=b", ctx}, `layercommit: bad --annotation "blob:a=b": unrecognized annotation type blob`},
		{"annotation without value", []string{"build", "--annotation", "a", ctx}, `layercommit: bad --annotation "a" (want [TYPE:]KEY=VALUE)`},
		{"bad label", []string{"build", "--label", "=v", ctx}, `layercommit: build: bad --label "=v" (want K=V)`},
		{"rmi of unknown", []string{"rmi", "app", "nope"}, "layercommit: rmi: nope: no such image in the local store"},
		{"tag of unknown", []string{"tag", "nope", "other"}, "layercommit: tag: nope: no such image in the local store"},
		{"tag to a bad name", []string{"tag", "app", "Other"}, `layercommit: tag: bad image name "Other": invalid reference format: repository name (library/Other) must be lowercase`},
		{"push of unknown", []string{"push", "nope", "127.0.0.1:1/x:1"}, "layercommit: reading local:nope: nope: no such image in the local store"},
		{"commit -o and -t", []string{"commit", "--upper", t.TempDir(), "-o", "oci:" + t.TempDir(), "-t", "x"}, "layercommit: commit: give -o DEST or -t NAME, not both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := cli(append([]string{tc.args[0], "--state-dir", state}, tc.args[1:]...)...)
			if code == 0 || stderr != tc.want+"\n" {
				t.Errorf("exit %d, stderr %q, want %q", code, stderr, tc.want)
			}
			if after, _ := os.ReadFile(index); string(after) != string(before) {
				t.Errorf("the store's index changed:\n%s\n%s", before, after)
			}
			if _, err := os.Stat(iid); err == nil {
				t.Errorf("--iidfile written")
			}
		})
	}
}

// TestStoreConcurrentBuilds: builds writing the store at once all land,
// each name on its own image, the index whole.
func TestStoreConcurrentBuilds(t *testing.T) {
	oracle.Root(t)
	state := t.TempDir()
	const n = 4
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make([]string, n)
	for i := range n {
		ctx := writeContext(t, "FROM scratch\nCOPY f /f\n", map[string]string{"f": fmt.Sprint("content ", i)})
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, out, stderr := cli("build", "-q", "--state-dir", state, "-t", fmt.Sprint("app:", i), "-t", "shared", ctx)
			if code != 0 {
				errs[i] = stderr
			}
			ids[i] = lastLine(out)
		}()
	}
	wg.Wait()
	for i, e := range errs {
		if e != "" {
			t.Fatalf("build %d: %s", i, e)
		}
	}
	got := names(storeImages(t, state))
	for i := range n {
		if got[fmt.Sprint("docker.io/library/app:", i)] != ids[i] {
			t.Errorf("app:%d names %s, want %s", i, got[fmt.Sprint("docker.io/library/app:", i)], ids[i])
		}
	}
	// "shared" names one of them; the others stay, untagged no more
	// (each keeps its app:N name).
	if s := got["docker.io/library/shared:latest"]; !strings.Contains(strings.Join(ids, " "), s) || s == "" {
		t.Errorf("shared names %q, not one of %v", s, ids)
	}
	if imgs := storeImages(t, state); len(imgs) != n {
		t.Errorf("the store holds %d images, want %d", len(imgs), n)
	}
	if code, out, stderr := cli("gc", "--state-dir", state); code != 0 || out != "" {
		t.Errorf("gc after concurrent builds removed %q (%s)", out, stderr)
	}
}
