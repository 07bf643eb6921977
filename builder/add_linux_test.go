package builder

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/layercommit/layercommit/internal/oracle"
)

// TestBuildAddArchivesAndURL: ADD extracts local tar archives compressed
// with gzip, bzip2, xz and zstd (made by the real command-line tools) in
// Go, copies a plain file as it is, and fetches a URL.
func TestBuildAddArchivesAndURL(t *testing.T) {
	oracle.Root(t)
	base := busyboxImage(t)
	ctxDir := writeContext(t, map[string]string{
		"tree/dir/inner.txt": "inner\n",
		"tree/top.txt":       "top\n",
		"plain.txt":          "not an archive\n",
	})
	tarball := filepath.Join(ctxDir, "a.tar")
	if out, err := exec.Command("tar", "-C", filepath.Join(ctxDir, "tree"), "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	for _, c := range []struct{ tool, ext string }{{"gzip", "gz"}, {"bzip2", "bz2"}, {"xz", "xz"}, {"zstd", "zst"}} {
		out := tarball + "." + c.ext
		cmd := exec.Command(oracle.Tool(t, c.tool), "-c", tarball)
		f, err := os.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout = f
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v", c.tool, err)
		}
		f.Close()
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/remote.txt" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("fetched over http\n"))
	}))
	defer srv.Close()
	dockerfile := `FROM base
ADD a.tar.gz /gz/
ADD a.tar.bz2 /bz/
ADD a.tar.xz /xz/
ADD a.tar.zst /zst/
ADD a.tar /plain-tar/
ADD plain.txt /plain.txt
ADD ` + srv.URL + `/remote.txt /remote.txt
RUN for d in gz bz xz zst plain-tar; do test "$(cat /$d/dir/inner.txt /$d/top.txt)" = "$(printf 'inner\ntop')" || { echo "bad /$d"; exit 1; }; done
RUN test "$(cat /plain.txt)" = "not an archive" && test "$(cat /remote.txt)" = "fetched over http"
`
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := testBuild(t, Options{ContextDir: ctxDir, BuildContexts: map[string]string{"base": base}}); err != nil {
		t.Fatal(err)
	}
	// A missing URL fails the build on its line.
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM base\nADD "+srv.URL+"/nope /x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := testBuild(t, Options{ContextDir: ctxDir, BuildContexts: map[string]string{"base": base}}); err == nil {
		t.Fatal("ADD of a missing URL succeeded")
	} else if got := err.Error(); len(got) < 13 || got[:13] != "Dockerfile:2:" {
		t.Fatalf("error %q does not name line 2", got)
	}
}

// TestBuildAddURLStreamed: an ADD download goes through a temp file of the
// state dir (gone after the step) and is checked against --checksum in the
// same pass; a mismatch fails on its line.
func TestBuildAddURLStreamed(t *testing.T) {
	base := busyboxImage(t)
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	sum := sha256.Sum256(body)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer srv.Close()
	cases := []struct {
		name, checksum, wantErr string
	}{
		{"no checksum", "", ""},
		{"right checksum", "--checksum=sha256:" + hex.EncodeToString(sum[:]) + " ", ""},
		{"wrong checksum", "--checksum=sha256:" + strings.Repeat("0", 64) + " ", "Dockerfile:2: ADD " + srv.URL + "/big.bin: checksum mismatch"},
		{"bad checksum", "--checksum=md5:abc ", "Dockerfile:2: ADD " + srv.URL + "/big.bin: unsupported checksum"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctxDir := writeContext(t, map[string]string{"Dockerfile": "FROM base\nADD " + tc.checksum + srv.URL + "/big.bin /big.bin\n" +
				"RUN test \"$(wc -c < /big.bin)\" -eq " + strconv.Itoa(len(body)) + "\n"})
			state := t.TempDir()
			_, err := testBuild(t, Options{ContextDir: ctxDir, StateDir: state, NoCache: true, BuildContexts: map[string]string{"base": base}})
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q...", err, tc.wantErr)
			}
			left, _ := os.ReadDir(filepath.Join(state, "tmp"))
			for _, e := range left {
				if strings.HasPrefix(e.Name(), "url-") {
					t.Errorf("download dir %s left in the state dir", e.Name())
				}
			}
		})
	}
}
