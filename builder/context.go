package builder

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// buildContext is the directory sent to a build, seen through its
// .dockerignore. Every path is resolved inside the directory (os.Root):
// names and symlinks that leave it are errors.
type buildContext struct {
	dir    string
	root   *os.Root
	ignore *patternmatcher.PatternMatcher // nil: nothing ignored
}

func openContext(dir string) (*buildContext, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("opening build context: %w", err)
	}
	c := &buildContext{dir: dir, root: root}
	f, err := root.Open(".dockerignore")
	if err == nil {
		patterns, rerr := ignorefile.ReadAll(f)
		f.Close()
		if rerr != nil {
			root.Close()
			return nil, fmt.Errorf("reading .dockerignore: %w", rerr)
		}
		if len(patterns) > 0 {
			if c.ignore, err = patternmatcher.New(patterns); err != nil {
				root.Close()
				return nil, fmt.Errorf("bad .dockerignore pattern: %w", err)
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		root.Close()
		return nil, fmt.Errorf("reading .dockerignore: %w", err)
	}
	return c, nil
}

func (c *buildContext) Close() error { return c.root.Close() }

// ignored reports whether rel (slash-separated, relative to the context
// root) is excluded by .dockerignore.
func (c *buildContext) ignored(rel string) bool {
	if c.ignore == nil || rel == "." {
		return false
	}
	m, err := c.ignore.MatchesOrParentMatches(rel)
	return err == nil && m
}

// contextPath cleans a COPY source into a path relative to the context
// root, rejecting names that leave it.
func contextPath(src string) (string, error) {
	p := path.Clean("/" + filepath.ToSlash(src))
	rel := strings.TrimPrefix(p, "/")
	if rel == "" {
		rel = "."
	}
	if strings.HasPrefix(path.Clean(filepath.ToSlash(src)), "../") || path.Clean(filepath.ToSlash(src)) == ".." {
		return "", fmt.Errorf("forbidden path outside the build context: %s", src)
	}
	return rel, nil
}

func hasWildcard(s string) bool { return strings.ContainsAny(s, "*?[") }

// match expands a COPY source pattern against the context's files (not
// ignored ones), as docker does: the pattern is matched against each
// path relative to the context root.
func (c *buildContext) match(pattern string) ([]string, error) {
	var out []string
	err := fs.WalkDir(c.root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == "." {
			return nil
		}
		if c.ignored(p) {
			if d.IsDir() && !c.ignore.Exclusions() {
				return fs.SkipDir
			}
			return nil
		}
		if ok, _ := path.Match(pattern, p); ok {
			out = append(out, p)
			if d.IsDir() {
				return fs.SkipDir
			}
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// contextFS is the context as an fs.FS that also reports which paths
// .dockerignore excludes, so that directory copies skip them.
type contextFS struct {
	c *buildContext
}

func (f contextFS) fs() fs.FS                         { return f.c.root.FS() }
func (f contextFS) Open(name string) (fs.File, error) { return f.fs().Open(name) }
func (f contextFS) Stat(name string) (fs.FileInfo, error) {
	return fs.Stat(f.fs(), name)
}
func (f contextFS) Lstat(name string) (fs.FileInfo, error) { return fs.Lstat(f.fs(), name) }
func (f contextFS) ReadLink(name string) (string, error)   { return fs.ReadLink(f.fs(), name) }
func (f contextFS) ReadDir(name string) ([]fs.DirEntry, error) {
	return fs.ReadDir(f.fs(), name)
}
func (f contextFS) ignoredPath(p string) bool { return f.c.ignored(p) }
