package builder

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/layercommit/layercommit/dockerfile"
)

// grepTree fails the test when value occurs in any file under dir, read
// as is and, for gzip files, decompressed.
func grepTree(t *testing.T, dir, value string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(value)) {
			t.Errorf("the secret is in %s", p)
		}
		if zr, err := gzip.NewReader(bytes.NewReader(b)); err == nil {
			if u, err := io.ReadAll(zr); err == nil && bytes.Contains(u, []byte(value)) {
				t.Errorf("the secret is in %s (decompressed)", p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBuildSecretNeverLeaks builds with a secret used as a file and as an
// env var and greps every blob of the output (decompressed; the config
// and history are blobs too), the whole state dir (cache entries,
// layers, blobs, tmp) and the progress output for its value.
func TestBuildSecretNeverLeaks(t *testing.T) {
	const secret = "Zq8-never-leak-7Hx"
	base := busyboxImage(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": `FROM base
RUN --mount=type=secret,id=tok cp /run/secrets/tok /dev/null && wc -c /run/secrets/tok > /len
RUN --mount=type=secret,id=tok,env=TOK,required=true test "$TOK" && echo ok > /ok
RUN --mount=type=secret,id=tok,target=/s/f,mode=0444 cat /s/f > /dev/null
`})
	state, out := t.TempDir(), filepath.Join(t.TempDir(), "out")
	var progress bytes.Buffer
	o := Options{ContextDir: ctxDir, StateDir: state, Progress: &progress, Secrets: map[string][]byte{"tok": []byte(secret)},
		BuildContexts: map[string]string{"base": base}}
	if _, err := testBuild(t, o, "oci:"+out); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "index.json")); err != nil {
		t.Fatal(err)
	}
	grepTree(t, out, secret)
	grepTree(t, state, secret)
	if strings.Contains(progress.String(), secret) {
		t.Error("the secret is in the progress output")
	}
	// The cached rebuild leaks nothing either.
	progress.Reset()
	if _, err := testBuild(t, o, "oci:"+out); err != nil {
		t.Fatal(err)
	}
	grepTree(t, state, secret)
}

// TestBuildMountErrors: bad --mount input is one Dockerfile:LINE error.
func TestBuildMountErrors(t *testing.T) {
	base := busyboxImage(t)
	for _, tc := range []struct{ name, df, want, target string }{
		{"missing-required-secret", "FROM base\nRUN --mount=type=secret,id=nope,required true\n", "Dockerfile:2: secret nope: not found", ""},
		{"bad-key", "FROM base\nRUN --mount=type=bind,bogus=1 true\n", "unexpected key 'bogus' in 'bogus=1'", ""},
		{"bad-type", "FROM base\nRUN --mount=type=nfs true\n", `unsupported mount type "nfs"`, ""},
		{"size-on-bind", "FROM base\nRUN --mount=size=1m,target=/x true\n", "unexpected key 'size' for mount type 'bind'", ""},
		{"mode-on-bind", "FROM base\nRUN --mount=target=/x,mode=0700 true\n", `mode not allowed for "bind" type mounts`, ""},
		{"later-stage", "FROM base AS a\nRUN --mount=from=later,target=/x true\nFROM base AS later\n", `cannot mount from stage "later" to "/x"`, "a"},
		{"root-target", "FROM base\nRUN --mount=type=tmpfs,target=/ true\n", `invalid mount target "/"`, ""},
		{"sharing-on-bind", "FROM base\nRUN --mount=target=/x,sharing=locked true\n", "invalid cache sharing set for bind mount", ""},
		{"secret-from", "FROM base\nRUN --mount=type=secret,id=a,from=base true\n", "secret mount should not have a from", ""},
		{"missing-required-ssh", "FROM base\nRUN --mount=type=ssh,required=true true\n", `Dockerfile:2: no SSH key "default" forwarded from the client`, ""},
		{"ssh-source", "FROM base\nRUN --mount=type=ssh,source=x true\n", "Dockerfile:2: ssh does not support source", ""},
		{"cache-source-missing", "FROM base\nRUN --mount=type=cache,target=/c,source=sub true\n", "Dockerfile:2: cache mount /c: source /sub: not in the cache", ""},
		{"cache-from-source-missing", "FROM base AS s\nFROM base\nRUN --mount=type=cache,from=s,source=nope,target=/c true\n", "Dockerfile:3: cache mount /c from s: source /nope: not in the cache", ""},
		{"cache-from-nothing", "FROM base\nRUN --mount=type=cache,from=nostage,target=/c true\n", "Dockerfile:2: mount from nostage: ", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctxDir := writeContext(t, map[string]string{"Dockerfile": tc.df})
			out := filepath.Join(t.TempDir(), "out")
			_, err := testBuild(t, Options{ContextDir: ctxDir, Target: tc.target, BuildContexts: map[string]string{"base": base}}, "oci:"+out)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, want one line with %q", err, tc.want)
			}
			var le *dockerfile.LineError
			if !errors.As(err, &le) {
				t.Errorf("%v is not a Dockerfile:LINE error", err)
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("the destination was written")
			}
		})
	}
}

// TestBuildCacheMountKeepsAndKeys: a cache mount's contents survive to
// the next build and are in no layer; they are not in the step's cache
// key (the step stays cached when they change), while a bind-mounted
// context file is (changing it reruns the step).
func TestBuildCacheMountKeepsAndKeys(t *testing.T) {
	base := busyboxImage(t)
	state := t.TempDir()
	bc := map[string]string{"base": base}
	build := func(df string, files map[string]string) map[string]string {
		t.Helper()
		files["Dockerfile"] = df
		out := filepath.Join(t.TempDir(), "out")
		if _, err := testBuild(t, Options{ContextDir: writeContext(t, files), StateDir: state, BuildContexts: bc}, "oci:"+out); err != nil {
			t.Fatal(err)
		}
		return imageTree(t, layoutImage(t, out))
	}
	a := build("FROM base\nRUN --mount=type=cache,target=/c cat /proc/sys/kernel/random/uuid > /c/stamp && cp /c/stamp /first\n", map[string]string{})
	if _, ok := a["c"]; ok {
		t.Errorf("the cache mount point is in the image: %s", a["c"])
	}
	b := build("FROM base\nRUN --mount=type=cache,target=/c/ cp /c/stamp /second\n", map[string]string{})
	if a["first"] == "" || a["first"] != b["second"] {
		t.Errorf("the cache did not survive: first %q, second %q", a["first"], b["second"])
	}
	// The first Dockerfile again: cached, though the cache changed.
	c := build("FROM base\nRUN --mount=type=cache,target=/c cat /proc/sys/kernel/random/uuid > /c/stamp && cp /c/stamp /first\n", map[string]string{})
	if c["first"] != a["first"] {
		t.Errorf("the step reran (cache contents counted in its key): %q then %q", a["first"], c["first"])
	}
	bind := "FROM base\nRUN --mount=source=f,target=/f cat /f > /got && cat /proc/sys/kernel/random/uuid > /when\n"
	d1 := build(bind, map[string]string{"f": "one\n"})
	d2 := build(bind, map[string]string{"f": "one\n"})
	d3 := build(bind, map[string]string{"f": "two\n"})
	if d1["when"] != d2["when"] {
		t.Error("an unchanged bind source reran the step")
	}
	if d3["when"] == d1["when"] || !strings.Contains(d3["got"], `content="two\n"`) {
		t.Errorf("a changed bind source did not rerun the step: %q", d3["got"])
	}
}

// TestBuildCacheMountLocked runs two builds at once on one locked cache:
// A waits inside its RUN for B's marker (a bounded wait, no timing
// assertion); B, started once A is inside, must not get in while A is.
// A records whether it saw B; B records whether A had finished.
func TestBuildCacheMountLocked(t *testing.T) {
	base := busyboxImage(t)
	state := t.TempDir()
	bc := map[string]string{"base": base}
	mk := func(who, script string) string {
		return writeContext(t, map[string]string{"Dockerfile": "FROM base\nRUN --mount=type=cache,id=lk,target=/c,sharing=locked " + script + "\n", "who": who})
	}
	ctxA := mk("a", `rm -f /c/a-inside /c/a-done /c/b-inside; touch /c/a-inside; i=0; while [ $i -lt 100 ] && [ ! -e /c/b-inside ]; do sleep 0.1; i=$((i+1)); done; if [ -e /c/b-inside ]; then echo overlap; else echo alone; fi > /a; touch /c/a-done`)
	ctxB := mk("b", `touch /c/b-inside; if [ -e /c/a-done ]; then echo after-a; else echo overlap; fi > /b`)
	outA, outB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	var wg sync.WaitGroup
	var errA error
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, errA = testBuild(t, Options{ContextDir: ctxA, StateDir: state, BuildContexts: bc, NoCache: true}, "oci:"+outA)
	}()
	// Start B once A is inside its RUN (its marker is in the cache dir).
	for {
		m, _ := filepath.Glob(filepath.Join(state, "cache-mounts", "*", "0", "a-inside"))
		if len(m) > 0 {
			break
		}
		if errA != nil {
			wg.Wait()
			t.Fatal(errA)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := testBuild(t, Options{ContextDir: ctxB, StateDir: state, BuildContexts: bc, NoCache: true}, "oci:"+outB); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if errA != nil {
		t.Fatal(errA)
	}
	a, b := imageTree(t, layoutImage(t, outA)), imageTree(t, layoutImage(t, outB))
	if !strings.Contains(a["a"], `content="alone\n"`) || !strings.Contains(b["b"], `content="after-a\n"`) {
		t.Errorf("locked cache was shared: A %s, B %s", a["a"], b["b"])
	}
}
