package dockerfile

import "github.com/moby/buildkit/frontend/dockerfile/dfgitutil"

// GitSource is an ADD source naming a git repository, as BuildKit's
// dockerfile frontend reads it (dfgitutil.ParseGitRef):
// https://host/repo.git#ref:subdir, git://…, git@host:repo, or the
// ?ref=&subdir=&keep-git-dir=&checksum=&submodules= query form.
type GitSource struct {
	Remote   string // what git fetches from
	Ref      string // branch, tag or commit; "" is the remote's HEAD
	SubDir   string // "" is the whole tree
	Checksum string // the commit (a prefix of it) the ref must resolve to
	// KeepGitDir and Submodules are the query's keep-git-dir= and
	// submodules=; nil when not given.
	KeepGitDir, Submodules *bool
}

// ParseGitSource reports whether src names a git repository the way
// BuildKit tells one from a path or a plain URL (an http(s) URL needs a
// path ending in .git; the deprecated bare github.com/… form is a path
// for ADD). A reference that is git but malformed is an error.
func ParseGitSource(src string) (*GitSource, bool, error) {
	ref, isGit, err := dfgitutil.ParseGitRef(src)
	if err != nil {
		if isGit {
			return nil, true, err
		}
		return nil, false, nil
	}
	if ref.IndistinguishableFromLocal {
		return nil, false, nil
	}
	return &GitSource{Remote: ref.Remote, Ref: ref.Ref, SubDir: ref.SubDir, Checksum: ref.Checksum,
		KeepGitDir: ref.KeepGitDir, Submodules: ref.Submodules}, true, nil
}
