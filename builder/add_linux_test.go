package builder

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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

// gzipTar is a gzip tar holding dir/in.txt.
func gzipTar(t *testing.T) []byte {
	t.Helper()
	var tb bytes.Buffer
	zw := gzip.NewWriter(&tb)
	tw := tar.NewWriter(zw)
	for _, h := range []*tar.Header{{Typeflag: tar.TypeDir, Name: "dir/", Mode: 0o755}, {Typeflag: tar.TypeReg, Name: "dir/in.txt", Mode: 0o640, Size: 3}} {
		h.ModTime = time.Unix(1700000000, 0)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	tw.Write([]byte("in\n"))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return tb.Bytes()
}

// copyFlagServer serves what the COPY/ADD flag tests fetch: /f.txt,
// /g.txt and /a.tar.gz (gzipTar).
func copyFlagServer(t *testing.T) *httptest.Server {
	t.Helper()
	files := map[string][]byte{"/f.txt": []byte("fetched\n"), "/g.txt": []byte("g\n"), "/a.tar.gz": gzipTar(t)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Last-Modified", time.Unix(1700000000, 0).UTC().Format(http.TimeFormat))
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestBuildKitCopyFlagErrors: COPY/ADD flag misuse that BuildKit v0.34
// refuses is refused here too, with one "Dockerfile:LINE:" line and
// nothing written to the destination.
func TestBuildKitCopyFlagErrors(t *testing.T) {
	k := oracle.NewBuildKit(t)
	srv, gsrv := copyFlagServer(t), gitServer(t)
	zeros := "sha256:" + strings.Repeat("0", 64)
	for _, tc := range []struct {
		name, dockerfile, want string
	}{
		{"checksum-local-source", "ADD --checksum=" + zeros + " f /f\n", "Dockerfile:2: checksum requires HTTP(S) or Git sources"},
		{"checksum-on-copy", "COPY --checksum=" + zeros + " f /f\n", "Dockerfile:2: unknown flag: --checksum"},
		{"checksum-several-sources", "ADD --checksum=" + zeros + " {{HTTP}}/f.txt {{HTTP}}/g.txt /d/\n", "Dockerfile:2: checksum can't be specified for multiple sources"},
		{"checksum-mismatch", "ADD --checksum=" + zeros + " {{HTTP}}/f.txt /f\n", "Dockerfile:2: ADD {{HTTP}}/f.txt: checksum mismatch"},
		{"chmod-not-octal", "COPY --chmod=0888 f /f\n", "Dockerfile:2: invalid chmod parameter: '0888'. it should be octal string and between 0 and 07777"},
		{"chmod-too-large", "COPY --chmod=17777 f /f\n", "Dockerfile:2: invalid chmod parameter: '17777'"},
		{"chmod-bad-symbolic", "COPY --chmod=u+q f /f\n", "Dockerfile:2: invalid chmod parameter"},
		{"chmod-bad-from-arg", "ARG M=a=rwz\nCOPY --chmod=$M f /f\n", "Dockerfile:3: invalid chmod parameter"},
		{"link-chown-name", "COPY --link --chown=nobody f /f\n", "Dockerfile:2: --chown=nobody: user and group names can't be resolved when used with --link, use numeric uid[:gid] instead"},
		{"link-not-boolean", "COPY --link=maybe f /f\n", "Dockerfile:2: expecting boolean value for flag --link, not: maybe"},
		{"exclude-without-value", "COPY --exclude f /d/\n", "Dockerfile:2: missing a value on flag: --exclude"},
		{"parents-on-add", "ADD --parents f /d/\n", "Dockerfile:2: unknown flag: --parents"},
		{"parents-missing-source", "COPY --parents nope/x /d/\n", "Dockerfile:2: COPY failed: file not found"},
		{"git-ref-missing", "ADD {{GIT}}/repo.git#no-such-branch /g/\n", `Dockerfile:2: ADD {{GIT}}/repo.git#no-such-branch: git ref "no-such-branch" not found`},
		{"git-subdir-missing", "ADD {{GIT}}/repo.git#main:nope /g/\n", `Dockerfile:2: ADD {{GIT}}/repo.git#main:nope: subdir "nope" is not a directory`},
		{"git-checksum-mismatch", "ADD --checksum=0123456789abcdef {{GIT}}/repo.git#main /g/\n", "Dockerfile:2: ADD {{GIT}}/repo.git#main: expected checksum to match 0123456789abcdef"},
		{"git-on-copy", "COPY {{GIT}}/repo.git /g/\n", "Dockerfile:2: source can't be a git ref for COPY"},
		{"url-on-copy", "COPY {{HTTP}}/f.txt /g/\n", "Dockerfile:2: source can't be a URL for COPY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := strings.NewReplacer("{{HTTP}}", srv.URL, "{{GIT}}", gsrv.URL)
			ctxDir := writeContext(t, map[string]string{"f": "f\n", "Dockerfile": "FROM " + k.Base + "\n" + r.Replace(tc.dockerfile)})
			if _, out, err := k.TryBuild(t, ctxDir, oracle.BuildOpts{}); err == nil {
				t.Fatalf("BuildKit built it:\n%s", out)
			}
			dest := filepath.Join(t.TempDir(), "out")
			_, err := testBuild(t, Options{ContextDir: ctxDir, ResolvePlatform: registryResolver}, "oci:"+dest)
			want := r.Replace(tc.want)
			if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want one line starting %q", err, want)
			}
			if _, err := os.Stat(dest); !os.IsNotExist(err) {
				t.Errorf("the failed build wrote %s (%v)", dest, err)
			}
		})
	}
}

// gitServer serves a repository over git's smart HTTP (Debian's git
// http-backend as a CGI) at URL/repo.git: main holds top.txt, an
// executable sub/run.sh, sub/inner.txt and a symlink; tag v1 is main's
// first commit (top.txt only); branch feature changes sub/inner.txt.
func gitServer(t *testing.T) *httptest.Server {
	t.Helper()
	gitBin := oracle.Tool(t, "git")
	work, root := t.TempDir(), t.TempDir()
	run := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command(gitBin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+work, "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid", "GIT_AUTHOR_DATE=2023-11-14T22:13:20Z", "GIT_COMMITTER_DATE=2023-11-14T22:13:20Z")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	write := func(p, content string, mode os.FileMode) {
		t.Helper()
		p = filepath.Join(work, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	run(work, "init", "-q", "-b", "main")
	write("top.txt", "top\n", 0o644)
	run(work, "add", ".")
	run(work, "commit", "-q", "-m", "first")
	run(work, "tag", "v1")
	write("sub/inner.txt", "inner on main\n", 0o644)
	write("sub/run.sh", "#!/bin/sh\n", 0o755)
	if err := os.Symlink("../top.txt", filepath.Join(work, "sub/link")); err != nil {
		t.Fatal(err)
	}
	run(work, "add", ".")
	run(work, "commit", "-q", "-m", "second")
	run(work, "checkout", "-q", "-b", "feature")
	write("sub/inner.txt", "inner on feature\n", 0o644)
	run(work, "commit", "-q", "-am", "feature")
	run(work, "checkout", "-q", "main")
	run(root, "clone", "-q", "--bare", work, "repo.git")
	srv := httptest.NewServer(&cgi.Handler{Path: gitBin, Args: []string{"http-backend"},
		Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "HOME=" + work}})
	t.Cleanup(srv.Close)
	return srv
}

// TestBuildKitAddGitKeepGitDir: ADD --keep-git-dir (and the
// keep-git-dir=true query form) keeps a .git whose HEAD, config,
// shallow list and named refs are BuildKit's; the work tree is the same.
// Objects, the index and reflogs are git's bytes, not compared.
func TestBuildKitAddGitKeepGitDir(t *testing.T) {
	k := oracle.NewBuildKit(t)
	g := gitServer(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "FROM scratch\nADD --keep-git-dir " + g.URL + "/repo.git#feature /r/\n" +
		"ADD " + g.URL + "/repo.git?ref=main&keep-git-dir=true /q/\n"})
	theirs := k.Build(t, ctxDir, oracle.BuildOpts{})
	ours := filepath.Join(t.TempDir(), "ours")
	if _, err := testBuild(t, Options{ContextDir: ctxDir}, "oci:"+ours); err != nil {
		t.Fatal(err)
	}
	keep := func(tree map[string]string) map[string]string {
		out := map[string]string{}
		for p, d := range tree {
			if strings.Contains(p, ".git/objects/") || strings.Contains(p, ".git/hooks/") || strings.Contains(p, ".git/logs") || strings.HasSuffix(p, ".git/index") {
				continue
			}
			// BuildKit reuses a checkout of the same commit from an
			// earlier build, whose config names that build's remote
			// (another port of this test's server): the remote URL is
			// checked below, the rest of config here.
			if strings.HasSuffix(p, ".git/config") {
				d = regexp.MustCompile(`url = http://127\.0\.0\.1:[0-9]+/`).ReplaceAllString(d, "url = REMOTE/")
				d = regexp.MustCompile(` sha=[0-9a-f]+`).ReplaceAllString(d, "")
			}
			out[p] = d
		}
		return out
	}
	a, b := keep(imageTree(t, layoutImage(t, theirs))), keep(imageTree(t, layoutImage(t, ours)))
	for _, p := range []string{"r/.git/HEAD", "r/.git/config", "r/.git/refs/heads/feature", "q/.git/HEAD", "r/sub/inner.txt"} {
		if a[p] == "" {
			t.Errorf("BuildKit's image has no %s", p)
		}
	}
	if !strings.Contains(b["r/.git/config"], `url = REMOTE/repo.git\n`) {
		t.Errorf("our r/.git/config does not name the remote: %s", b["r/.git/config"])
	}
	for _, d := range treeDiff(a, b) {
		t.Error(d)
	}
}

// TestBuildAddGitWithoutGit: with no git on PATH, ADD of a git URL fails
// with one line saying so, and nothing fetches the URL another way.
func TestBuildAddGitWithoutGit(t *testing.T) {
	oracle.Root(t)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "FROM scratch\nADD " + srv.URL + "/repo.git#main /r/\n"})
	t.Setenv("PATH", t.TempDir())
	dest := filepath.Join(t.TempDir(), "out")
	_, err := testBuild(t, Options{ContextDir: ctxDir}, "oci:"+dest)
	want := "Dockerfile:2: ADD " + srv.URL + "/repo.git#main: git sources need git, which is not installed here"
	if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %v, want one line starting %q", err, want)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the server was asked %d times", n)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Errorf("the failed build wrote %s (%v)", dest, err)
	}
}

// TestBuildCopyChmodFromArgKeysCache: with one state dir, --chmod from
// an ARG given another value is another step, not a cache hit with the
// first value's modes, and the first value again gives its modes.
func TestBuildCopyChmodFromArgKeysCache(t *testing.T) {
	oracle.Root(t)
	state := t.TempDir()
	ctxDir := writeContext(t, map[string]string{"f": "f\n", "Dockerfile": "FROM scratch\nARG M\nCOPY --chmod=$M f /f\n"})
	for _, m := range []string{"0600", "u=rwx,go=rx", "0600"} {
		out := filepath.Join(t.TempDir(), "out")
		v := m
		if _, err := testBuild(t, Options{ContextDir: ctxDir, StateDir: state, BuildArgs: map[string]*string{"M": &v}}, "oci:"+out); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"0600": "mode=100600", "u=rwx,go=rx": "mode=100755"}[m]
		if got := imageTree(t, layoutImage(t, out))["f"]; !strings.HasPrefix(got, want) {
			t.Errorf("--chmod=%s: f is %q, want %s", m, got, want)
		}
	}
}
