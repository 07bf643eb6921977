package dockerfile

import (
	"fmt"
	"testing"
)

// TestParseGitSource: which ADD sources are git repositories, and their
// parts, as BuildKit's frontend reads them.
func TestParseGitSource(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"https://example.com/repo.git", "https://example.com/repo.git ref= sub= sum= keep=<nil>"},
		{"https://example.com/repo.git#v1:sub/dir", "https://example.com/repo.git ref=v1 sub=sub/dir sum= keep=<nil>"},
		{"https://example.com/repo.git#:sub", "https://example.com/repo.git ref= sub=sub sum= keep=<nil>"},
		{"https://example.com/repo.git?ref=main&subdir=s&keep-git-dir=true&checksum=abc", "https://example.com/repo.git ref=main sub=s sum=abc keep=true"},
		{"git@github.com:o/r.git#main", "git@github.com:o/r.git ref=main sub= sum= keep=<nil>"},
		{"git://example.com/r#x", "git://example.com/r ref=x sub= sum= keep=<nil>"},
		{"https://example.com/file.tar.gz", "not git"},
		{"https://example.com/page", "not git"},
		{"github.com/o/r", "not git"},
		{"dir/file", "not git"},
		{"https://example.com/repo.git?nope=1", "error"},
	} {
		t.Run(tc.src, func(t *testing.T) {
			g, isGit, err := ParseGitSource(tc.src)
			got := "not git"
			switch {
			case err != nil:
				got = "error"
			case isGit:
				keep := "<nil>"
				if g.KeepGitDir != nil {
					keep = fmt.Sprint(*g.KeepGitDir)
				}
				got = fmt.Sprintf("%s ref=%s sub=%s sum=%s keep=%s", g.Remote, g.Ref, g.SubDir, g.Checksum, keep)
			}
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}
