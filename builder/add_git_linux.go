package builder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/layercommit/layercommit/dockerfile"
	"github.com/layercommit/layercommit/internal/safepath"
)

// gitCheckout fetches ref's commit from its remote with Debian's git (a
// shallow fetch of the one ref into a fresh repository under dir, as
// BuildKit's git source does), checks it out and returns the tree ADD
// copies: the checkout (or its subdir), with .git only when keepGitDir.
// The checkout's commit must start with checksum when one is given. No
// git, an unknown ref or a failed fetch is an error; nothing is ever
// downloaded another way.
func gitCheckout(ctx context.Context, ref *dockerfile.GitSource, keepGitDir bool, checksum, dir string) (copySource, func(), error) {
	none := func() {}
	gitBin, err := exec.LookPath("git")
	if err != nil {
		return copySource{}, none, errors.New("git sources need git, which is not installed here (apt-get install git)")
	}
	repo := filepath.Join(dir, "checkout")
	home := filepath.Join(dir, "home")
	for _, d := range []string{repo, home} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return copySource{}, none, err
		}
	}
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, gitBin, append([]string{"-C", repo, "-c", "advice.detachedHead=false", "-c", "init.defaultBranch=main"}, args...)...)
		// No user or system config, no prompts: the fetch is what the
		// URL says, nothing else.
		cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=/bin/false", "LC_ALL=C"}
		if s := os.Getenv("SSH_AUTH_SOCK"); s != "" {
			cmd.Env = append(cmd.Env, "SSH_AUTH_SOCK="+s)
		}
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Run(); err != nil {
			msg := strings.TrimSpace(stderr.String())
			if i := strings.LastIndex(msg, "\n"); i >= 0 {
				msg = strings.TrimSpace(msg[i+1:])
			}
			return "", fmt.Errorf("git %s: %s (%w)", args[0], msg, err)
		}
		return strings.TrimSpace(out.String()), nil
	}
	if _, err := git("init", "-q"); err != nil {
		return copySource{}, none, err
	}
	if _, err := git("remote", "add", "origin", ref.Remote); err != nil {
		return copySource{}, none, err
	}
	want := ref.Ref
	if want == "" {
		want = "HEAD"
	}
	if _, err := git("fetch", "-q", "--depth=1", "--no-tags", "origin", want); err != nil {
		if strings.Contains(err.Error(), "couldn't find remote ref") || strings.Contains(err.Error(), "not our ref") {
			return copySource{}, none, fmt.Errorf("git ref %q not found in %s", want, ref.Remote)
		}
		return copySource{}, none, fmt.Errorf("fetching %s from %s: %w", want, ref.Remote, err)
	}
	if _, err := git("checkout", "-q", "FETCH_HEAD"); err != nil {
		return copySource{}, none, err
	}
	commit, err := git("rev-parse", "HEAD")
	if err != nil {
		return copySource{}, none, err
	}
	if checksum != "" && !strings.HasPrefix(commit, checksum) {
		return copySource{}, none, fmt.Errorf("expected checksum to match %s, got %s", checksum, commit)
	}
	if _, err := os.Stat(filepath.Join(repo, ".gitmodules")); err == nil && (ref.Submodules == nil || *ref.Submodules) {
		if _, err := git("submodule", "update", "--init", "--recursive", "--depth=1"); err != nil {
			return copySource{}, none, err
		}
	}
	if !keepGitDir {
		if err := os.RemoveAll(filepath.Join(repo, ".git")); err != nil {
			return copySource{}, none, err
		}
	} else if err := keptGitDir(git, repo, ref.Ref, commit); err != nil {
		return copySource{}, none, err
	}
	root, err := safepath.Open(repo)
	if err != nil {
		return copySource{}, none, err
	}
	fsys := rootFS{root}
	sub := "."
	if ref.SubDir != "" {
		if sub, err = contextPath(ref.SubDir); err != nil {
			root.Close()
			return copySource{}, none, err
		}
	}
	fi, err := fs.Stat(fsys, sub)
	if err != nil || !fi.IsDir() {
		root.Close()
		return copySource{}, none, fmt.Errorf("subdir %q is not a directory of %s at %s", ref.SubDir, ref.Remote, want)
	}
	return copySource{name: path.Base(sub), fsys: fsys, rel: sub, mode: fi.Mode(), mtime: fi.ModTime()}, func() { root.Close() }, nil
}

// keptGitDir shapes the checkout's .git for --keep-git-dir as BuildKit
// leaves it: HEAD detached at the commit, a named ref as both a branch
// and a tag there, no FETCH_HEAD and no remote-tracking refs. Objects,
// the index and reflogs are git's own and differ in bytes from
// BuildKit's.
func keptGitDir(git func(...string) (string, error), repo, name, commit string) error {
	dotgit := filepath.Join(repo, ".git")
	for _, p := range []string{"FETCH_HEAD", "refs/remotes", "logs/refs/remotes"} {
		if err := os.RemoveAll(filepath.Join(dotgit, p)); err != nil {
			return err
		}
	}
	if name == "" || name == commit {
		return nil
	}
	for _, r := range []string{"refs/heads/" + name, "refs/tags/" + name} {
		if _, err := git("update-ref", "--no-deref", r, commit); err != nil {
			return err
		}
	}
	return nil
}

// addGit resolves one ADD git source: --keep-git-dir and --checksum
// (or their query forms, which must agree) as BuildKit's dispatchCopy
// reads them.
func (b *build) addGit(ctx context.Context, s *stageState, in *dockerfile.CopyInstr, src string, ref *dockerfile.GitSource) (copySource, func(), error) {
	line := in.Line
	none := func() {}
	keep := false
	if in.KeepGitDir != nil {
		keep = *in.KeepGitDir
	}
	if ref.KeepGitDir != nil {
		if in.KeepGitDir != nil && *in.KeepGitDir != *ref.KeepGitDir {
			return copySource{}, none, lineErr(line, "inconsistent keep-git-dir configuration")
		}
		keep = *ref.KeepGitDir
	}
	checksum := ""
	if in.Checksum != "" {
		var err error
		if checksum, err = b.expand(s, line, in.Checksum); err != nil {
			return copySource{}, none, err
		}
	}
	if ref.Checksum != "" {
		if checksum != "" && checksum != ref.Checksum {
			return copySource{}, none, lineErr(line, "checksum mismatch %q != %q", checksum, ref.Checksum)
		}
		checksum = ref.Checksum
	}
	tmp, err := b.st.TempDir("git-")
	if err != nil {
		return copySource{}, none, err
	}
	cs, closeRoot, err := gitCheckout(ctx, ref, keep, checksum, tmp)
	cleanup := func() {
		closeRoot()
		os.RemoveAll(tmp)
	}
	if err != nil {
		cleanup()
		return copySource{}, none, lineErr(line, "ADD %s: %w", src, err)
	}
	return cs, cleanup, nil
}
