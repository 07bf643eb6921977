package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/dockerroot"
	"github.com/layercommit/layercommit/export"
	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/internal/atomicfile"
	"github.com/layercommit/layercommit/internal/crashpoint"
	"github.com/layercommit/layercommit/internal/oracle"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary builds the layercommit command once per test binary, for tests
// that must kill it.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "layercommit-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "layercommit")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// bigUpper is an upper dir with 6 MiB of random data, so that a commit
// takes long enough to be killed in the middle of a blob.
func bigUpper(t *testing.T, seed int64) string {
	t.Helper()
	dir := t.TempDir()
	data := make([]byte, 6<<20)
	rand.New(rand.NewSource(seed)).Read(data)
	must(t, fixtures.Apply(dir, fixtures.CreateDir("big", 0o755),
		fixtures.CreateFile("big/random", data, 0o644),
		fixtures.CreateFile("big/seed", []byte(fmt.Sprint(seed)), 0o644)))
	return dir
}

// crashRun runs the binary with a crash point (or none) and kills it
// after delay (if non-zero). It reports whether the process died by
// SIGKILL; any other failure fails the test.
func crashRun(t *testing.T, point string, delay time.Duration, args ...string) (killed bool) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append(os.Environ(), crashpoint.Env+"="+point)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if delay > 0 {
		timer := time.AfterFunc(delay, func() { cmd.Process.Signal(syscall.SIGKILL) })
		defer timer.Stop()
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return true
		}
	}
	if err != nil {
		t.Fatalf("layercommit %s (crash at %q): %v\n%s", strings.Join(args, " "), point, err, stderr.String())
	}
	return false
}

// checkBlobs checks that every file in an OCI layout's blobs/sha256 that
// has a digest's name holds that digest.
func checkBlobs(t *testing.T, layout string) {
	t.Helper()
	dir := filepath.Join(layout, "blobs", "sha256")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), atomicfile.TempPrefix) {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != e.Name() {
			t.Errorf("blob %s holds sha256:%s", e.Name(), got)
		}
	}
}

// ociTagsOf reads the tags of an OCI layout's index.json.
func ociTagsOf(t *testing.T, layout string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(layout, "index.json"))
	if err != nil {
		t.Fatalf("reading index.json: %v", err)
	}
	var im v1.IndexManifest
	if err := json.Unmarshal(b, &im); err != nil {
		t.Fatalf("index.json is torn: %v\n%s", err, b)
	}
	var tags []string
	for _, d := range im.Manifests {
		tags = append(tags, d.Annotations["org.opencontainers.image.ref.name"])
	}
	sort.Strings(tags)
	return tags
}

// checkOCI checks an OCI layout after a crash: blobs match their names,
// every tag reads and validates, and the tags in want are there.
func checkOCI(t *testing.T, layout string, want ...string) {
	t.Helper()
	checkBlobs(t, layout)
	tags := ociTagsOf(t, layout)
	for _, tag := range tags {
		checkImage(t, "oci:"+layout+":"+tag)
	}
	for _, w := range want {
		if !contains(tags, w) {
			t.Errorf("tag %q lost; layout has %v", w, tags)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// tree lists the paths under dir (not below diff/ dirs of overlay2 layers
// or unpacked trees), for "what did gc remove" comparisons.
func tree(t *testing.T, dir string) map[string]bool {
	t.Helper()
	paths := map[string]bool{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		paths[p] = true
		if d.IsDir() && d.Name() == "diff" && p != dir {
			return filepath.SkipDir
		}
		return nil
	})
	return paths
}

// gcAndCheck runs gc with args, checks that every printed path existed
// before and is gone, that every removed top path was printed, and that
// no temp name remains. It returns the printed paths.
func gcAndCheck(t *testing.T, dir string, args ...string) []string {
	t.Helper()
	before := tree(t, dir)
	code, out, errs := cli(append([]string{"gc"}, args...)...)
	if code != 0 {
		t.Fatalf("gc %v: exit %d: %s", args, code, errs)
	}
	printed := strings.Fields(out)
	after := tree(t, dir)
	for _, p := range printed {
		if !before[p] {
			t.Errorf("gc printed %s, which did not exist", p)
		}
		if after[p] {
			t.Errorf("gc printed %s, which is still there", p)
		}
	}
	for p := range before {
		if after[p] {
			continue
		}
		// A removed path must be printed, itself or a parent.
		found := false
		for q := p; q != dir && q != "/" && q != "."; q = filepath.Dir(q) {
			if contains(printed, q) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("gc removed %s without saying so", p)
		}
	}
	for p := range after {
		base := filepath.Base(p)
		if strings.HasPrefix(base, atomicfile.TempPrefix) || strings.HasPrefix(base, dockerroot.TempPrefix) ||
			base == dockerroot.PendingMarker || strings.HasPrefix(base, "write-set-") {
			t.Errorf("gc left %s", p)
		}
	}
	return printed
}

// TestKillCommit kills commits into each destination at every injected
// checkpoint and at random moments, checks after each kill that the
// destination is valid with its earlier tags intact, then runs gc and
// checks what it removed. For docker-root a restarted dockerd must list
// and run the earlier images.
func TestKillCommit(t *testing.T) {
	oracle.Root(t)
	stage1, _ := commitUppers(t)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	seed := rng.Int63()
	t.Logf("random kill seed %d", seed)
	rng = rand.New(rand.NewSource(seed))
	const randomKills = 3

	t.Run("oci", func(t *testing.T) {
		top := t.TempDir()
		layout := filepath.Join(top, "layout")
		start := time.Now()
		if crashRun(t, "", 0, "commit", "-q", "--upper", bigUpper(t, 1), "-o", "oci:"+layout+":base") {
			t.Fatal("killed without a crash point")
		}
		full := time.Since(start)
		lc(t, false, "commit", "-q", "--upper", stage1, "-o", "oci:"+layout+":small")
		want := []string{"base", "small"}
		from := "oci:" + layout + ":small"
		for i, p := range []string{"layer-blob-temp", "layer-blob-renamed", "oci-blob-temp", "oci-before-index"} {
			if !crashRun(t, p, 0, "commit", "-q", "--from", from, "--upper", bigUpper(t, int64(10+i)), "-o", "oci:"+layout+":crash-"+p) {
				t.Fatalf("not killed at %s", p)
			}
			checkOCI(t, layout, want...)
			if contains(ociTagsOf(t, layout), "crash-"+p) {
				t.Errorf("tag of the commit killed at %s is there", p)
			}
		}
		// oci-layer-blob is passed for base layers not in the layout.
		other := filepath.Join(top, "other")
		if !crashRun(t, "oci-layer-blob", 0, "copy", from, "oci:"+other+":copied") {
			t.Fatal("not killed at oci-layer-blob")
		}
		for i := 0; i < randomKills; i++ {
			d := time.Duration(rng.Int63n(int64(full)))
			tag := fmt.Sprintf("random-%d", i)
			if !crashRun(t, "", d, "commit", "-q", "--from", from, "--upper", bigUpper(t, int64(20+i)), "-o", "oci:"+layout+":"+tag) {
				want = append(want, tag)
			}
			checkOCI(t, layout, want...)
		}
		removed := gcAndCheck(t, top, "oci:"+layout, "oci:"+other)
		t.Logf("gc removed:\n%s", strings.Join(removed, "\n"))
		if len(removed) == 0 {
			t.Error("gc found nothing to remove after the kills")
		}
		checkOCI(t, layout, want...)
		// Every blob left is referenced: a second gc removes nothing.
		if again := gcAndCheck(t, layout, "oci:"+layout); len(again) != 0 {
			t.Errorf("second gc removed %v", again)
		}
		lc(t, false, "commit", "-q", "--from", from, "--upper", bigUpper(t, 30), "-o", "oci:"+layout+":after")
		checkOCI(t, layout, append(want, "after")...)
	})

	t.Run("docker-archive", func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join(dir, "out.tar")
		lc(t, false, "commit", "-q", "--upper", stage1, "-o", "docker-archive:"+file+":x:base")
		before := checkImage(t, "docker-archive:"+file)
		id, _ := before.ConfigName()
		start := time.Now()
		crashRun(t, "", 0, "commit", "-q", "--upper", bigUpper(t, 2), "-o", "docker-archive:"+filepath.Join(dir, "timing.tar"))
		full := time.Since(start)
		os.Remove(filepath.Join(dir, "timing.tar"))
		check := func(p string) {
			img := checkImage(t, "docker-archive:"+file)
			if got, _ := img.ConfigName(); got != id {
				t.Errorf("after a kill at %s the archive holds %s, not the earlier %s", p, got, id)
			}
		}
		for i, p := range []string{"layer-blob-temp", "layer-blob-renamed", "archive-temp-written"} {
			if !crashRun(t, p, 0, "commit", "-q", "--upper", bigUpper(t, int64(10+i)), "-o", "docker-archive:"+file+":x:crash") {
				t.Fatalf("not killed at %s", p)
			}
			check(p)
		}
		// A random kill may land before the rename (the earlier archive is
		// there) or after it (the new one is, whole): old or new, never
		// torn. The new one is recognised by its top layer's diffID.
		for i := 0; i < randomKills; i++ {
			d := time.Duration(rng.Int63n(int64(full)))
			upper := bigUpper(t, int64(20+i))
			crashRun(t, "", d, "commit", "-q", "--upper", upper, "-o", "docker-archive:"+file+":x:random")
			img := checkImage(t, "docker-archive:"+file)
			got, _ := img.ConfigName()
			if got == id {
				continue
			}
			wantDiffID, _, err := diff.Write(t.Context(), io.Discard, diff.Overlay(upper))
			must(t, err)
			cf, err := img.ConfigFile()
			must(t, err)
			ids := cf.RootFS.DiffIDs
			if len(ids) == 0 || ids[len(ids)-1] != wantDiffID {
				t.Fatalf("after a kill at random moment %d the archive holds %s: neither the earlier %s nor the killed commit's image (top diffIDs %v, want %s)", i, got, id, ids, wantDiffID)
			}
			id = got // the new one replaced it whole
		}
		// Killed after the rename: the new archive is complete.
		if !crashRun(t, "archive-renamed", 0, "commit", "-q", "--upper", stage1, "-o", "docker-archive:"+file+":x:late") {
			t.Fatal("not killed at archive-renamed")
		}
		checkImage(t, "docker-archive:"+file)
		if removed := gcAndCheck(t, dir, "docker-archive:"+file); len(removed) == 0 {
			t.Error("gc found nothing to remove after the kills")
		}
		checkImage(t, "docker-archive:"+file)
	})

	t.Run("build", func(t *testing.T) {
		top := t.TempDir()
		layout, state := filepath.Join(top, "layout"), filepath.Join(top, "state")
		ctxDir := bigUpper(t, 4)
		must(t, os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM scratch\nCOPY big /big\n"), 0o644))
		lc(t, false, "commit", "-q", "--upper", stage1, "-o", "oci:"+layout+":small")
		build := func(tag string) []string {
			return []string{"build", "-q", "--state-dir", state, "-o", "oci:" + layout + ":" + tag, ctxDir}
		}
		for _, p := range []string{"layer-blob-temp", "layer-blob-renamed"} {
			if !crashRun(t, p, 0, build("crash")...) {
				t.Fatalf("build not killed at %s", p)
			}
			checkOCI(t, layout, "small")
		}
		removed := gcAndCheck(t, top, "--state-dir", state, "oci:"+layout)
		var step, blob bool
		for _, p := range removed {
			step = step || strings.HasPrefix(p, filepath.Join(state, "tmp")+"/")
			blob = blob || filepath.Dir(p) == filepath.Join(state, "blobs", "sha256") && !strings.HasPrefix(filepath.Base(p), atomicfile.TempPrefix)
		}
		if !step || !blob {
			t.Errorf("gc should remove the killed step's dir and the blob no cache entry names; removed:\n%s", strings.Join(removed, "\n"))
		}
		if crashRun(t, "", 0, build("built")...) {
			t.Fatal("killed without a crash point")
		}
		checkOCI(t, layout, "small", "built")
	})

	t.Run("docker-root", func(t *testing.T) {
		d := oracle.StartDaemon(t)
		d.Stop(t)
		root := d.Root
		rootArgs := func(args ...string) []string {
			return append([]string{"commit", "-q", "--docker-root", root, "--from", "docker-root:" + d.Base}, args...)
		}
		start := time.Now()
		if crashRun(t, "", 0, rootArgs("--upper", stage1, "-o", "docker-root:kt:base")...) {
			t.Fatal("killed without a crash point")
		}
		full := time.Since(start)
		want := []string{"kt:base"}
		check := func(p string) {
			t.Helper()
			for _, w := range want {
				img, err := export.Open(t.Context(), "docker-root:"+w, export.WithDockerRoot(root))
				if err != nil {
					t.Fatalf("after a kill at %s: reading %s: %v", p, w, err)
				}
				if err := validate.Image(img); err != nil {
					t.Fatalf("after a kill at %s: validate.Image(%s): %v", p, w, err)
				}
			}
		}
		// Layer points first: once a kill lands after the layerdb rename
		// the layer exists and later runs skip straight to the image.
		points := []string{"layer-blob-temp", "docker-root-layer-unpacked", "docker-root-overlay2-renamed",
			"docker-root-layerdb-renamed", "docker-root-layers-written", "docker-root-config-written"}
		upper := bigUpper(t, 3)
		for _, p := range points {
			if !crashRun(t, p, 0, rootArgs("--upper", upper, "-o", "docker-root:kt:crash")...) {
				t.Fatalf("not killed at %s", p)
			}
			check(p)
		}
		for i := 0; i < randomKills; i++ {
			dl := time.Duration(rng.Int63n(int64(full)))
			tag := fmt.Sprintf("kt:random-%d", i)
			if !crashRun(t, "", dl, rootArgs("--upper", bigUpper(t, int64(20+i)), "-o", "docker-root:"+tag)...) {
				want = append(want, tag)
			}
			check(fmt.Sprintf("random moment %d", i))
		}
		removed := gcAndCheck(t, root, "--docker-root", root)
		t.Logf("gc removed:\n%s", strings.Join(removed, "\n"))
		var orphan, marker bool
		for _, p := range removed {
			orphan = orphan || filepath.Dir(p) == filepath.Join(root, "overlay2") && !strings.HasPrefix(filepath.Base(p), dockerroot.TempPrefix)
			marker = marker || filepath.Base(p) == dockerroot.PendingMarker
		}
		if !orphan || !marker {
			t.Errorf("gc should remove the orphan overlay2 dir (kill after its rename) and the marker of the kill after the layerdb rename; removed:\n%s", strings.Join(removed, "\n"))
		}
		check("gc")
		// The crash layer's blob was the same each time: one more
		// commit of it completes.
		if crashRun(t, "", 0, rootArgs("--upper", upper, "-o", "docker-root:kt:crash")...) {
			t.Fatal("killed without a crash point")
		}
		want = append(want, "kt:crash")
		check("rerun")

		d.Start(t)
		for _, w := range want {
			if out := d.Run(t, "images", "-q", w); out == "" {
				t.Errorf("dockerd does not list %s", w)
			}
		}
		if out := d.Run(t, "run", "--rm", "--network", "none", "kt:base", "cat", "/app/old1"); out != "old one" {
			t.Errorf("docker run kt:base shows %q", out)
		}
		if out := d.Run(t, "run", "--rm", "--network", "none", "kt:crash", "cat", "/big/seed"); out != "3" {
			t.Errorf("docker run kt:crash shows %q", out)
		}
	})
}

// TestCommitDiskFullDockerRoot fills a small tmpfs holding a data root
// (HOSTILE.md F1, F2): the blob fits but its unpacked layer does not; the
// commit fails with one line, the root is as it was (no temp dir, no
// half-made overlay2 dir, no write set), gc finds nothing, and a smaller
// commit then succeeds.
func TestCommitDiskFullDockerRoot(t *testing.T) {
	oracle.Root(t)
	stage1, _ := commitUppers(t)
	big := t.TempDir()
	data := make([]byte, 1200<<10)
	rand.New(rand.NewSource(1)).Read(data)
	must(t, fixtures.Apply(big, fixtures.CreateFile("random", data, 0o644)))
	full := t.TempDir()
	if err := syscall.Mount("tmpfs", full, "tmpfs", 0, "size=2m"); err != nil {
		oracle.Missing(t, "cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(full, syscall.MNT_DETACH) })
	root := filepath.Join(full, "root")
	must(t, fixtures.Apply(full, fixtures.CreateDir("root/image/overlay2", 0o700)))
	lc(t, false, "commit", "-q", "--docker-root", root, "--upper", stage1, "-o", "docker-root:df:one")
	before := snapshot(t, full)
	_, stderr := lc(t, true, "commit", "-q", "--docker-root", root, "--compression", "none", "--upper", big, "-o", "docker-root:df:two")
	assertCommitError(t, stderr, "no space left on device")
	if !strings.Contains(stderr, "writing layer 1") {
		t.Errorf("the disk should fill while the layer is unpacked into overlay2 (F2): %s", stderr)
	}
	if after := snapshot(t, full); after != before {
		t.Fatalf("the failed commit changed the data root:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if removed := gcOut(t, "--docker-root", root); len(removed) != 0 {
		t.Errorf("gc after a clean failure removed %v", removed)
	}
	lc(t, false, "commit", "-q", "--docker-root", root, "--from", "docker-root:df:one", "--upper", stage1, "-o", "docker-root:df:three")
	for _, ref := range []string{"df:one", "df:three"} {
		img, err := export.Open(t.Context(), "docker-root:"+ref, export.WithDockerRoot(root))
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(img); err != nil {
			t.Fatalf("validate.Image(%s): %v", ref, err)
		}
	}
}
