package builder

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/export"
)

// signalWriter closes seen once marker has been written to it.
type signalWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	marker string
	seen   chan struct{}
	once   sync.Once
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.marker) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

// mountsUnder lists this process's mounts whose mount point or source
// is under one of dirs.
func mountsUnder(t *testing.T, dirs ...string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		for _, d := range dirs {
			if strings.Contains(line, d) {
				out = append(out, line)
			}
		}
	}
	return out
}

// TestBuildNoMountLeftBehind: a RUN with every mount type that fails,
// that is killed by a signal, or whose build is cancelled while it runs
// leaves no mount (in this mount namespace), no step dir, no context
// copy and no ssh socket behind; its cache mount keeps what the failed RUN wrote there
// (as BuildKit's does), which the next build sees. (Whether the cache's
// lock was released cannot be told here: a leaked lock's file is closed
// by its finalizer, so the next build may get it anyway.)
func TestBuildNoMountLeftBehind(t *testing.T) {
	base := busyboxImage(t)
	agent := testAgent(t)
	mounts := "--mount=type=cache,id=leak,target=/c,sharing=private --mount=target=/ctx --mount=target=/ctx-rw,rw " +
		"--mount=type=tmpfs,target=/t --mount=type=secret,id=tok --mount=type=ssh --mount=from=base,target=/b"
	for _, tc := range []struct {
		name, cmd string
		cancel    bool
	}{
		{"fails", "echo fails > /c/mark && exit 3", false},
		{"killed", "echo killed > /c/mark && kill -9 $$", false},
		{"cancelled", "echo cancelled > /c/mark && echo RUN-STARTED && sleep 600", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state, ctxDir := t.TempDir(), writeContext(t, map[string]string{"f": "f\n",
				"Dockerfile": "FROM base\nRUN " + mounts + " " + tc.cmd + "\n"})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			progress := &signalWriter{marker: "\nRUN-STARTED", seen: make(chan struct{})}
			o := Options{ContextDir: ctxDir, StateDir: state, Progress: progress, BuildContexts: map[string]string{"base": base},
				Secrets: map[string][]byte{"tok": []byte("v")}, SSH: map[string]string{"default": agent},
				Resolve: func(ctx context.Context, ref string) (v1.Image, error) { return export.Open(ctx, ref) }}
			done := make(chan error, 1)
			go func() { _, err := Build(ctx, o); done <- err }()
			if tc.cancel {
				select {
				case <-progress.seen:
				case err := <-done:
					t.Fatalf("the build ended before its RUN started: %v\n%s", err, progress.buf.String())
				}
				cancel()
			}
			if err := <-done; err == nil {
				t.Fatal("the build succeeded")
			}
			if m := mountsUnder(t, state, ctxDir); len(m) > 0 {
				t.Errorf("mounts left behind:\n%s", strings.Join(m, "\n"))
			}
			err := filepath.WalkDir(state, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if strings.HasPrefix(d.Name(), "step-") || strings.HasPrefix(d.Name(), "context-") || d.Type() == fs.ModeSocket {
					t.Errorf("left behind: %s", p)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			// The cache kept what the RUN wrote.
			ctx2 := writeContext(t, map[string]string{"Dockerfile": "FROM base\nRUN --mount=type=cache,id=leak,target=/c,sharing=private cp /c/mark /mark\n"})
			out := filepath.Join(t.TempDir(), "out")
			if _, err := testBuild(t, Options{ContextDir: ctx2, StateDir: state, BuildContexts: map[string]string{"base": base}}, "oci:"+out); err != nil {
				t.Fatal(err)
			}
			if got := imageTree(t, layoutImage(t, out))["mark"]; !strings.Contains(got, `content="`+tc.name+`\n"`) {
				t.Errorf("the next build's cache holds %q, want the mark %q", got, tc.name)
			}
		})
	}
}
