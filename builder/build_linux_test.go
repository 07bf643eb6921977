package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/layercommit/layercommit/export"
)

// busyboxImage writes a one-layer docker-archive of busyboxRoot and
// returns its reference.
func busyboxImage(t *testing.T) string {
	t.Helper()
	root := busyboxRoot(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == root {
			return err
		}
		r, _ := filepath.Rel(root, p)
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name, h.Uname, h.Gname, h.Uid, h.Gid = r, "", "", 0, 0
		h.ModTime = time.Unix(1700000000, 0)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.CreatedAt(img, v1.Time{Time: time.Unix(1700000000, 0)})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "base.tar")
	tag, _ := name.NewTag("test/base:latest")
	if err := tarball.WriteToFile(file, tag, img); err != nil {
		t.Fatal(err)
	}
	return "docker-archive:" + file
}

func writeContext(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for n, c := range files {
		p := filepath.Join(dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// testBuild builds with a resolver over export's transports and writes
// the image to dest (default a new OCI layout), checking it with
// validate.Image first.
func testBuild(t *testing.T, o Options, dest ...string) (v1.Hash, error) {
	t.Helper()
	if o.StateDir == "" {
		o.StateDir = t.TempDir()
	}
	out := "oci:" + filepath.Join(t.TempDir(), "out")
	if len(dest) > 0 {
		out = dest[0]
	}
	d, err := export.NewDestination(t.Context(), out)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	o.OCIMediaTypes = d.PrefersOCI()
	o.Resolve = func(ctx context.Context, ref string) (v1.Image, error) { return export.Open(ctx, ref) }
	var progress bytes.Buffer
	o.Progress = &progress
	res, err := Build(context.Background(), o)
	if testing.Verbose() {
		t.Logf("progress:\n%s", progress.String())
	}
	if err != nil {
		return v1.Hash{}, err
	}
	if err := validate.Image(res.Image); err != nil {
		t.Fatalf("validate.Image: %v", err)
	}
	if err := d.Write(t.Context(), res.Image); err != nil {
		t.Fatalf("writing %s: %v", out, err)
	}
	return res.ID, nil
}

const reproDockerfile = `FROM base
ARG V=1
ENV A=b
COPY f /f
RUN echo "$V" > /v && date > /date-is-not-in-the-layer-mtime && touch -d 2030-01-01 /future
WORKDIR /w
CMD ["sh"]
`

// TestBuildReproducible: two --no-cache builds with the same epoch give
// the same image ID, with every created time at the epoch; a cached
// rebuild without an epoch gives the first build's ID again.
func TestBuildReproducible(t *testing.T) {
	base := busyboxImage(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": strings.Replace(reproDockerfile, "date >", "echo fixed >", 1), "f": "data\n"})
	epoch := int64(1600000000)
	state := t.TempDir()
	var ids []v1.Hash
	for i := 0; i < 2; i++ {
		out := filepath.Join(t.TempDir(), "out.tar")
		id, err := testBuild(t, Options{ContextDir: ctxDir, StateDir: state, NoCache: true, SourceDateEpoch: &epoch,
			BuildContexts: map[string]string{"base": base}}, "docker-archive:"+out)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		img, err := tarball.ImageFromPath(out, nil)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if !cf.Created.Time.Equal(time.Unix(epoch, 0)) {
			t.Errorf("created = %v", cf.Created)
		}
		for _, h := range cf.History[1:] {
			if !h.Created.Time.Equal(time.Unix(epoch, 0)) {
				t.Errorf("history created = %v (%s)", h.Created, h.CreatedBy)
			}
		}
		if n := len(cf.History); n != 7 {
			t.Errorf("history has %d entries, want 7", n)
		}
		ls, _ := img.Layers()
		top := ls[len(ls)-1]
		rc, _ := top.Uncompressed()
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			if h.ModTime.Unix() > epoch {
				t.Errorf("%s: mtime %v after the epoch", h.Name, h.ModTime)
			}
		}
		rc.Close()
	}
	if ids[0] != ids[1] {
		t.Errorf("two --no-cache builds with one epoch: %s != %s", ids[0], ids[1])
	}

	// Without an epoch: a cached rebuild reproduces the ID.
	state2 := t.TempDir()
	opts := Options{ContextDir: ctxDir, StateDir: state2, BuildContexts: map[string]string{"base": base}}
	first, err := testBuild(t, opts)
	if err != nil {
		t.Fatal(err)
	}
	again, err := testBuild(t, opts)
	if err != nil {
		t.Fatal(err)
	}
	if first != again {
		t.Errorf("cached rebuild: %s != %s", again, first)
	}
	// A changed file misses the cache from its COPY on.
	if err := os.WriteFile(filepath.Join(ctxDir, "f"), []byte("other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	changed, err := testBuild(t, opts)
	if err != nil {
		t.Fatal(err)
	}
	if changed == first {
		t.Errorf("a changed context file gave the cached image")
	}
}

// TestBuildRunFails: a failing RUN fails the build with its exit code,
// line and output tail; a stage the target does not need is not built.
func TestBuildRunFails(t *testing.T) {
	base := busyboxImage(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": `FROM base AS broken
RUN exit 9
FROM base
RUN echo fine
RUN echo some output; echo more >&2; exit 42
`})
	_, err := testBuild(t, Options{ContextDir: ctxDir, BuildContexts: map[string]string{"base": base}})
	var se *StepError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want a StepError", err)
	}
	if se.ExitCode != 42 || se.Line != 5 || !strings.Contains(se.Tail, "some output\nmore\n") {
		t.Errorf("StepError = %+v", se)
	}
	if !strings.HasPrefix(err.Error(), "Dockerfile:5: ") {
		t.Errorf("error %q does not start with its line", err)
	}
	// --target broken builds it and fails there.
	_, err = testBuild(t, Options{ContextDir: ctxDir, Target: "broken", BuildContexts: map[string]string{"base": base}})
	if !errors.As(err, &se) || se.ExitCode != 9 || se.Line != 2 {
		t.Errorf("--target broken: %v", err)
	}
}

// TestBuildCopyRules covers COPY/ADD sources and destinations that the
// docker fixtures do not: .dockerignore, escapes, symlinks out of the
// context, heredocs, --chmod and ADD of zstd and xz archives.
func TestBuildCopyRules(t *testing.T) {
	base := busyboxImage(t)
	ctxDir := writeContext(t, map[string]string{
		".dockerignore": "secret*\n**/*.log\n!keep.log\n",
		"a/x.txt":       "x\n", "a/debug.log": "log\n", "keep.log": "kept\n", "secret.txt": "s\n",
	})
	if err := os.Symlink("/etc/shadow", filepath.Join(ctxDir, "shadow")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dockerfile, wantErr string
	}{
		{"ignored", "FROM base\nCOPY secret.txt /\n", "Dockerfile:2: COPY failed: file not found in build context or excluded by .dockerignore"},
		{"escape", "FROM base\nCOPY ../x /\n", "Dockerfile:2: forbidden path outside the build context"},
		{"symlink-out", "FROM base\nCOPY shadow /\n", "Dockerfile:2: COPY failed: forbidden path outside the build context"},
		{"multi-no-slash", "FROM base\nCOPY a/x.txt keep.log /dst\n", "Dockerfile:2: When using COPY with more than one source file, the destination must be a directory and end with a /"},
		{"no-match", "FROM base\nCOPY *.nothing /\n", "Dockerfile:2: COPY failed: no source files were specified"},
		{"ok", `FROM base
COPY a /a/
COPY keep.log a/*.txt /w/
COPY --chmod=0700 a/x.txt /x
COPY --chmod=4755 a/x.txt /suid
COPY <<EOF /here.txt
hello $HOME
EOF
RUN test ! -e /a/debug.log && test -e /w/keep.log && test -e /w/x.txt && test -e /a/x.txt
RUN test "$(stat -c %a /x)" = 700 && test "$(cat /here.txt)" = "hello " && test "$(stat -c %A /suid)" = -rwsr-xr-x
`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(tc.dockerfile), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := testBuild(t, Options{ContextDir: ctxDir, BuildContexts: map[string]string{"base": base}})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want prefix %q", err, tc.wantErr)
			}
		})
	}
}
