package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/layercommit/layercommit/export"
	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/internal/oracle"
)

// result is one finished process of a concurrent run.
type result struct {
	tag    string
	err    error
	stderr string
}

// runAll starts one layercommit process per tag at once and waits for all.
func runAll(t *testing.T, tags []string, args func(i int, tag string) []string) []result {
	t.Helper()
	bin := binary(t)
	res := make([]result, len(tags))
	var wg sync.WaitGroup
	for i, tag := range tags {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(bin, args(i, tag)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			res[i] = result{tag: tag, err: cmd.Run(), stderr: stderr.String()}
		}()
	}
	wg.Wait()
	return res
}

// succeeded returns the tags whose commit succeeded; a failure must be a
// clear one-line lock error.
func succeeded(t *testing.T, res []result) []string {
	t.Helper()
	var ok []string
	for _, r := range res {
		if r.err == nil {
			ok = append(ok, r.tag)
			continue
		}
		if !strings.Contains(r.stderr, "another layercommit") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("commit %s: %v: %q", r.tag, r.err, r.stderr)
		}
	}
	return ok
}

// smallUppers makes n upper dirs; the last two hold the same content, so
// two writers race for the same layer digest.
func smallUppers(t *testing.T, n int) []string {
	t.Helper()
	var dirs []string
	for i := 0; i < n; i++ {
		content := fmt.Sprintf("writer %d\n", min(i, n-2))
		dir := t.TempDir()
		must(t, fixtures.Apply(dir, fixtures.CreateDir("w", 0o755), fixtures.CreateFile("w/id", []byte(content), 0o644)))
		dirs = append(dirs, dir)
	}
	return dirs
}

// TestConcurrentCommits runs several commits into one OCI layout at once
// (with a gc among them), and several into one data root: afterwards every
// tag is there and readable, or its commit failed with a clear lock error.
func TestConcurrentCommits(t *testing.T) {
	oracle.Root(t)
	const n = 6

	t.Run("oci", func(t *testing.T) {
		layout := filepath.Join(t.TempDir(), "layout")
		uppers := smallUppers(t, n)
		var tags []string
		for i := 0; i < n; i++ {
			tags = append(tags, fmt.Sprintf("t%d", i))
		}
		tags = append(tags, "gc")
		res := runAll(t, tags, func(i int, tag string) []string {
			if tag == "gc" {
				return []string{"gc", "oci:" + layout}
			}
			return []string{"commit", "-q", "--upper", uppers[i], "-o", "oci:" + layout + ":" + tag}
		})
		gc := res[n]
		res = res[:n]
		// gc may find no layout yet; otherwise it must succeed.
		if gc.err != nil && !strings.Contains(gc.stderr, "not an OCI layout") {
			t.Errorf("concurrent gc: %v: %s", gc.err, gc.stderr)
		}
		ok := succeeded(t, res)
		if len(ok) != n {
			t.Errorf("only %v of %d commits succeeded", ok, n)
		}
		checkOCI(t, layout, ok...)
		if got := ociTagsOf(t, layout); len(got) != len(ok) {
			t.Errorf("layout has tags %v, want %v", got, ok)
		}
		for i, tag := range ok {
			img := checkImage(t, "oci:"+layout+":"+tag)
			if i < n-1 {
				continue
			}
			// The two writers of the same layer share its blob.
			a, _ := img.Layers()
			b, _ := checkImage(t, "oci:"+layout+":"+ok[i-1]).Layers()
			da, _ := a[len(a)-1].Digest()
			db, _ := b[len(b)-1].Digest()
			if da != db {
				t.Errorf("same content, different layer digests %s and %s", da, db)
			}
		}
		if again := gcOut(t, "oci:"+layout); len(again) != 0 {
			t.Errorf("gc after the concurrent commits removed %v", again)
		}
	})

	t.Run("docker-root", func(t *testing.T) {
		d := oracle.StartDaemon(t)
		d.Stop(t)
		uppers := smallUppers(t, n)
		var tags []string
		for i := 0; i < n; i++ {
			tags = append(tags, fmt.Sprintf("conc:t%d", i))
		}
		res := runAll(t, tags, func(i int, tag string) []string {
			return []string{"commit", "-q", "--docker-root", d.Root, "--from", "docker-root:" + d.Base,
				"--upper", uppers[i], "-o", "docker-root:" + tag}
		})
		ok := succeeded(t, res)
		if len(ok) != n {
			t.Errorf("only %v of %d commits succeeded", ok, n)
		}
		for _, tag := range ok {
			img, err := export.Open(t.Context(), "docker-root:"+tag, export.WithDockerRoot(d.Root))
			if err != nil {
				t.Fatalf("reading %s: %v", tag, err)
			}
			if err := validate.Image(img); err != nil {
				t.Fatalf("validate.Image(%s): %v", tag, err)
			}
		}
		if again := gcOut(t, "--docker-root", d.Root); len(again) != 0 {
			t.Errorf("gc after the concurrent commits removed %v", again)
		}
		d.Start(t)
		for _, tag := range ok {
			var i int
			fmt.Sscanf(tag, "conc:t%d", &i)
			want := fmt.Sprintf("writer %d", min(i, n-2))
			if out := d.Run(t, "run", "--rm", "--network", "none", tag, "cat", "/w/id"); out != want {
				t.Errorf("docker run %s shows %q, want %q", tag, out, want)
			}
		}
	})
}
