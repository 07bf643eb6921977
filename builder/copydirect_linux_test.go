package builder

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCopyIntoNewDir: a COPY of trees into a destination the root does
// not have yet writes below it in the step's upper dir directly
// (copyIntoNewDir); its image is the one the copy through the merged
// root gives, byte for byte, in every case, and the cases that cannot go
// direct (the destination exists, a file source) do not.
func TestCopyIntoNewDir(t *testing.T) {
	base := busyboxImage(t)
	ctxDir := writeContext(t, map[string]string{
		".dockerignore": "a/ignored.txt\n",
		"a/x.txt":       "x\n", "a/sub/y.txt": "y\n", "a/debug.log": "log\n", "a/ignored.txt": "no\n",
		"b/z.txt": "z\n", "f.txt": "f\n",
	})
	if err := os.Link(filepath.Join(ctxDir, "a/x.txt"), filepath.Join(ctxDir, "a/sub/x-link.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("x.txt", filepath.Join(ctxDir, "a/x-sym")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(ctxDir, "a/empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, body string
		direct     int64 // copies done in the upper dir
	}{
		{"a new directory", "COPY a /new/\n", 1},
		{"new parents below an existing directory", "COPY a /etc/new/deeper\n", 1},
		{"through a symlinked parent", "RUN mkdir /real && ln -s /real /link\nCOPY a /link/new/\n", 1},
		{"over a deleted directory", "RUN mkdir -p /gone/x && touch /gone/x/f /gone/g\nRUN rm -rf /gone\nCOPY a /gone/\n", 1},
		{"a deleted directory's parent", "RUN mkdir -p /p/gone && touch /p/gone/f\nRUN rm -rf /p/gone\nCOPY a /p/gone/new/\n", 1},
		{"--chown", "COPY --chown=65534:50 a /owned/\n", 1},
		{"--chown by name", "COPY --chown=nobody:staff a /owned/\n", 1},
		{"--chmod", "COPY --chmod=0700 a /modes/\n", 1},
		{"--exclude", "COPY --exclude=*.log a /ex/\n", 1},
		{"two trees into one directory", "COPY a b /multi/\n", 1},
		{"relative to WORKDIR", "WORKDIR /w\nCOPY a sub/\n", 1},
		{"then a RUN reads it", "COPY a /r/\nRUN test \"$(cat /r/sub/y.txt)\" = y && test -L /r/x-sym && test -d /r/empty\n", 1},
		{"an existing destination", "COPY a /etc/\n", 0},
		{"a file source", "COPY f.txt /newfile/\n", 0},
		{"a tree and a file", "COPY a f.txt /mixed/\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			df := "FROM base\n" + tc.body
			if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(df), 0o644); err != nil {
				t.Fatal(err)
			}
			epoch := int64(1700000000)
			ids := map[bool]string{}
			for _, direct := range []bool{false, true} {
				directCopy = direct
				before := directCopies.Load()
				id, err := testBuild(t, Options{ContextDir: ctxDir, NoCache: true, SourceDateEpoch: &epoch,
					BuildContexts: map[string]string{"base": base}})
				directCopy = true
				if err != nil {
					t.Fatalf("direct=%t: %v", direct, err)
				}
				ids[direct] = id.String()
				if n := directCopies.Load() - before; direct && n != tc.direct {
					t.Errorf("%d copies in the upper dir, want %d", n, tc.direct)
				}
			}
			if ids[true] != ids[false] {
				t.Errorf("image %s written in the upper dir, %s through the merged root", ids[true], ids[false])
			}
		})
	}
}
