package builder

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/moby/patternmatcher"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/dockerfile"
	"github.com/layercommit/layercommit/internal/safepath"
	"github.com/layercommit/layercommit/unpack"
)

func goarch() string { return runtime.GOARCH }

// unmount detaches a mount we made.
func unmount(dir string) error {
	if err := unix.Unmount(dir, 0); err != nil {
		if err2 := unix.Unmount(dir, unix.MNT_DETACH); err2 != nil {
			return fmt.Errorf("unmounting %s: %w", dir, err)
		}
	}
	return nil
}

// copySource is one resolved COPY/ADD source.
type copySource struct {
	name string // base name used under a directory destination
	// exactly one of:
	fsys    fs.FS  // a tree (context or image root) and rel, its path in it
	rel     string //
	data    []byte // heredoc content
	file    string // a downloaded URL body, in a temp file of the state dir
	mode    os.FileMode
	mtime   time.Time
	archive bool // ADD: extract instead of copying
	// include, for COPY --parents, is the pattern (relative to rel, a
	// directory) of what to copy, keeping its directories.
	include *patternmatcher.PatternMatcher
}

// copyStep runs COPY or ADD.
func (b *build) copyStep(ctx context.Context, s *stageState, in *dockerfile.CopyInstr) error {
	line := in.Line
	dest, err := b.expand(s, line, in.Dest)
	if err != nil {
		return err
	}
	chown := ""
	if in.Chown != "" {
		if chown, err = b.expand(s, line, in.Chown); err != nil {
			return err
		}
	}
	var chmod *dockerfile.Chmod
	chmodStr := ""
	if in.Chmod != "" {
		if chmodStr, err = b.expand(s, line, in.Chmod); err != nil {
			return err
		}
		if chmod, err = dockerfile.ParseChmod(chmodStr); err != nil {
			return lineErr(line, "%w", err)
		}
	}
	if in.Link && chownByName(chown) {
		return lineErr(line, "--chown=%s: user and group names can't be resolved when used with --link, use numeric uid[:gid] instead", chown)
	}
	if in.Checksum != "" && len(in.Sources) != 1 {
		return lineErr(line, "checksum can't be specified for multiple sources")
	}
	var exclude *patternmatcher.PatternMatcher
	if len(in.Excludes) > 0 {
		if exclude, err = patternmatcher.New(in.Excludes); err != nil {
			return lineErr(line, "--exclude: %w", err)
		}
	}
	// Where the sources come from: the context, a stage or an image.
	var srcFS fs.FS = contextFS{b.bctx}
	fromContext := in.From == ""
	if !fromContext {
		from, err := b.expand(s, line, in.From)
		if err != nil {
			return err
		}
		fsys, cleanup, err := b.fromFS(ctx, s, from, b.fromPaths(s, in))
		if err != nil {
			return lineErr(line, "%s --from=%s: %w", in.Name(), from, err)
		}
		srcFS = fsys
		defer cleanup()
	}
	srcs, names, cleanup, err := b.copySources(ctx, s, in, srcFS, fromContext)
	defer cleanup()
	if err != nil {
		return err
	}
	multi := len(srcs) > 1
	if multi && !strings.HasSuffix(dest, "/") && !in.Parents {
		return lineErr(line, "When using %s with more than one source file, the destination must be a directory and end with a /", in.Name())
	}
	destAbs := dest
	if !path.IsAbs(dest) {
		destAbs = path.Join("/", s.config().WorkingDir, dest)
		if strings.HasSuffix(dest, "/") || dest == "." {
			destAbs += "/"
		}
	}
	digest, err := b.digestSources(srcs, fromContext)
	if err != nil {
		return lineErr(line, "%w", err)
	}
	createdBy, opts := copyCreatedBy(s, in, srcs, digest, dest, chown, chmodStr)
	for _, e := range in.Excludes {
		opts += " exclude=" + e
	}
	if in.Parents {
		opts += " parents"
	}
	if in.Link {
		opts += " link"
	}
	if in.Unpack != nil {
		opts += fmt.Sprintf(" unpack=%t", *in.Unpack)
	}
	key := b.stepKey(s, createdBy+opts+"\x00"+strings.Join(names, "\x00")+"\x00from="+in.From, digest)
	if b.fromCache(s, key) {
		return nil
	}
	// --link (without --chmod, as BuildKit's dispatchCopy has it) copies
	// onto an empty tree that becomes the layer, stacked on the base by
	// the image (BuildKit's MergeOp): nothing of the base is read, so a
	// base symlink on the way is not followed and the directories leading
	// to the destination are new ones (0755, the --chown owner) over the
	// base's.
	into := b.inOverlay
	if in.Link && in.Chmod == "" {
		into = b.inScratch
	}
	return into(ctx, s, key, createdBy, line, func(files stepFiles) error {
		root := files.root
		id := Identity{}
		if chown != "" {
			if id, err = chownIdentity(rootFS{root}, chown); err != nil {
				return lineErr(line, "%w", err)
			}
		}
		cp := &copier{root: root, id: id, chowned: chown != "", chmod: chmod, exclude: exclude, ctx: ctx, buf: make([]byte, 1<<20)}
		if files.toUpper != nil && directCopy && !in.Parents && treesOnly(srcs) {
			done, err := cp.copyIntoNewDir(srcs, destAbs, files.toUpper)
			if err != nil {
				return lineErr(line, "%s %w", in.Name(), err)
			}
			if done {
				return nil
			}
		}
		for _, src := range srcs {
			if err := cp.copy(src, destAbs); err != nil {
				return lineErr(line, "%s %s: %w", in.Name(), src.name, err)
			}
		}
		return nil
	})
}

// copyCreatedBy is the legacy builder's created_by of a COPY or ADD, and
// the options that change its result without showing there (for the
// cache key).
func copyCreatedBy(s *stageState, in *dockerfile.CopyInstr, srcs []copySource, digest, dest, chown, chmod string) (createdBy, opts string) {
	flag := ""
	if chown != "" {
		opts += " chown=" + chown
		// The legacy builder writes the flag with no space after it.
		flag = "--chown=" + chown
	}
	if chmod != "" {
		// Expanded: --chmod=$MODE is another step for another MODE.
		opts += " chmod=" + chmod
	}
	kind := "file"
	if len(srcs) > 1 {
		kind = "multi"
	} else if len(srcs) == 1 && srcs[0].fsys != nil && srcs[0].mode.IsDir() {
		kind = "dir"
	}
	return s.nopCommentString(fmt.Sprintf("%s %s%s:%s in %s ", in.Name(), flag, kind, digest, dest)), opts
}

// copySources resolves the instruction's sources: heredocs, ADD URLs
// (downloaded into the state dir; cleanup removes them) and paths or
// wildcards in srcFS. names are the sources as written, for the cache key.
func (b *build) copySources(ctx context.Context, s *stageState, in *dockerfile.CopyInstr, srcFS fs.FS, fromContext bool) (srcs []copySource, names []string, cleanup func(), err error) {
	line := in.Line
	var tmps []string
	var closers []func()
	cleanup = func() {
		for _, c := range closers {
			c()
		}
		for _, t := range tmps {
			os.RemoveAll(t)
		}
	}
	heredocs := map[string]dockerfile.Heredoc{}
	for _, h := range in.Heredocs {
		heredocs[h.Name] = h
	}
	for _, raw := range in.Sources {
		name, isHeredoc := dockerfile.HeredocSource(raw)
		if h, ok := heredocs[name]; ok && isHeredoc {
			content := h.Content
			if h.Expand {
				if content, err = dockerfile.ProcessHeredoc(content, b.expansionEnv(s)); err != nil {
					return nil, nil, cleanup, lineErr(line, "%w", err)
				}
			}
			srcs = append(srcs, copySource{name: h.Name, data: []byte(content), mode: 0o644, mtime: time.Unix(0, 0)})
			names = append(names, "<<"+h.Name)
			continue
		}
		src, err := b.expand(s, line, raw)
		if err != nil {
			return nil, nil, cleanup, err
		}
		if ref, isGit, err := dockerfile.ParseGitSource(src); isGit {
			if err != nil {
				return nil, nil, cleanup, lineErr(line, "%s %s: %w", in.Name(), src, err)
			}
			if !in.Add {
				return nil, nil, cleanup, lineErr(line, "source can't be a git ref for COPY")
			}
			cs, done, err := b.addGit(ctx, s, in, src, ref)
			if err != nil {
				return nil, nil, cleanup, err
			}
			closers = append(closers, done)
			srcs = append(srcs, cs)
			names = append(names, src)
			continue
		}
		isURL := strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://")
		if isURL && !in.Add {
			return nil, nil, cleanup, lineErr(line, "source can't be a URL for COPY")
		}
		if isURL {
			tmp, err := b.st.TempDir("url-")
			if err != nil {
				return nil, nil, cleanup, err
			}
			tmps = append(tmps, tmp)
			checksum, err := b.expand(s, line, in.Checksum)
			if err != nil {
				return nil, nil, cleanup, err
			}
			cs, err := fetchURL(ctx, src, checksum, tmp)
			if err != nil {
				return nil, nil, cleanup, lineErr(line, "ADD %s: %w", src, err)
			}
			// A URL is not unpacked unless --unpack asks (BuildKit 0.34).
			if in.Unpack != nil && *in.Unpack {
				cs.archive = isArchive(os.DirFS(tmp), filepath.Base(cs.file))
			}
			srcs = append(srcs, cs)
			names = append(names, src)
			continue
		}
		if in.Checksum != "" {
			return nil, nil, cleanup, lineErr(line, "checksum requires HTTP(S) or Git sources")
		}
		var found []copySource
		if in.Parents {
			found, err = b.parentsSource(in, srcFS, src)
		} else {
			found, err = b.pathSources(in, srcFS, fromContext, src)
		}
		if err != nil {
			return nil, nil, cleanup, err
		}
		srcs = append(srcs, found...)
		names = append(names, src)
	}
	return srcs, names, cleanup, nil
}

// inScratch is inOverlay for COPY --link: fn writes into the new layer's
// directory alone (no base below it, no overlay mounted), which becomes
// the step's layer.
func (b *build) inScratch(ctx context.Context, s *stageState, key, createdBy string, line int, fn func(stepFiles) error) error {
	dir, upper, _, err := b.newStepDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	err = func() error {
		root, err := safepath.Open(upper)
		if err != nil {
			return err
		}
		defer root.Close()
		return fn(stepFiles{root: root})
	}()
	if err != nil {
		return dockerfile.AtLine(line, err)
	}
	l, err := b.st.WriteLayer(ctx, upper, b.layerOptions(s)...)
	if err != nil {
		return lineErr(line, "%w", err)
	}
	return b.commit(s, key, createdBy, l, upper)
}

// parentsSource is COPY --parents' source, as BuildKit's dispatchCopy
// makes it: the directory before a "/./" pivot (else the root of the
// source) copied with the rest as an include pattern, so what matches
// lands under the destination with the directories leading to it. A path
// without wildcards must exist.
func (b *build) parentsSource(in *dockerfile.CopyInstr, srcFS fs.FS, src string) ([]copySource, error) {
	line := in.Line
	parent, pattern, ok := strings.Cut(src, "/./")
	if !ok {
		parent, pattern = "/", src
	}
	root, err := contextPath(parent)
	if err != nil {
		return nil, lineErr(line, "%w", err)
	}
	pattern = strings.TrimPrefix(path.Clean("/"+pattern), "/")
	if pattern == "" {
		pattern = "."
	}
	pm, err := patternmatcher.New([]string{pattern})
	if err != nil {
		return nil, lineErr(line, "%s --parents %s: %w", in.Name(), src, err)
	}
	if !hasWildcard(parent) && !hasWildcard(pattern) {
		if _, err := fs.Stat(srcFS, path.Join(root, pattern)); err != nil {
			return nil, lineErr(line, "%s failed: file not found in build context or excluded by .dockerignore: stat %s: file does not exist", in.Name(), src)
		}
	}
	fi, err := fs.Stat(srcFS, root)
	if err != nil || !fi.IsDir() {
		return nil, lineErr(line, "%s failed: file not found in build context or excluded by .dockerignore: stat %s: file does not exist", in.Name(), parent)
	}
	return []copySource{{name: path.Base(root), fsys: srcFS, rel: root, mode: fi.Mode(), mtime: fi.ModTime(), include: pm}}, nil
}

// pathSources resolves one source path or wildcard in srcFS, with the
// legacy builder's errors.
func (b *build) pathSources(in *dockerfile.CopyInstr, srcFS fs.FS, fromContext bool, src string) ([]copySource, error) {
	line := in.Line
	rel, err := contextPath(src)
	if err != nil {
		return nil, lineErr(line, "%w", err)
	}
	var matches []string
	if hasWildcard(rel) {
		if fromContext {
			matches, err = b.bctx.match(rel)
		} else {
			matches, err = matchFS(srcFS, rel)
		}
		if err != nil {
			return nil, lineErr(line, "%w", err)
		}
		if len(matches) == 0 {
			return nil, lineErr(line, "%s failed: no source files were specified", in.Name())
		}
	} else {
		if fromContext && b.bctx.ignored(rel) {
			return nil, lineErr(line, "%s failed: file not found in build context or excluded by .dockerignore: stat %s: file does not exist", in.Name(), src)
		}
		if _, err := fs.Stat(srcFS, rel); err != nil {
			if strings.Contains(err.Error(), "escapes") {
				return nil, lineErr(line, "%s failed: forbidden path outside the build context: %s", in.Name(), src)
			}
			return nil, lineErr(line, "%s failed: file not found in build context or excluded by .dockerignore: stat %s: file does not exist", in.Name(), src)
		}
		matches = []string{rel}
	}
	var srcs []copySource
	for _, m := range matches {
		fi, err := fs.Stat(srcFS, m)
		if err != nil {
			return nil, lineErr(line, "%s failed: %w", in.Name(), err)
		}
		cs := copySource{name: path.Base(m), fsys: srcFS, rel: m, mode: fi.Mode(), mtime: fi.ModTime()}
		if in.Add && fi.Mode().IsRegular() && (in.Unpack == nil || *in.Unpack) {
			cs.archive = isArchive(srcFS, m)
		}
		srcs = append(srcs, cs)
	}
	return srcs, nil
}

// fromFS gives COPY --from's tree: a local named context's (localFS), or
// a stage's or an image's root, read through a read-only overlay mount of
// its layers when they are unpacked already, else (want set: the names COPY reads) a tree of just those
// names extracted from the layer streams (extractPaths), so a stage that
// came whole from the cache is not unpacked for one file.
func (b *build) fromFS(ctx context.Context, s *stageState, from string, want []string) (fs.FS, func(), error) {
	if _, ok := b.localContext(from); ok {
		return b.localFS(from)
	}
	var img v1.Image
	if j, isStage := b.stageIndex(from, s.stage.Index); isStage {
		img = b.stages[j].img
	} else {
		var err error
		if img, err = b.openImage(ctx, from, s.platform); err != nil {
			return nil, nil, err
		}
	}
	if want != nil && !b.unpacked(img) {
		tmp, err := b.extractPaths(ctx, img, want)
		switch {
		case err == nil:
			root, err := safepath.Open(filepath.Join(tmp, "tree"))
			if err != nil {
				os.RemoveAll(tmp)
				return nil, nil, err
			}
			return rootFS{root}, func() {
				root.Close()
				os.RemoveAll(tmp)
			}, nil
		case !errors.Is(err, errNeedWholeTree):
			return nil, nil, err
		}
	}
	// imageDirs, not lowerDirs: a stage is another goroutine's.
	dirs, err := b.imageDirs(ctx, img)
	if err != nil {
		return nil, nil, err
	}
	tmp, err := b.st.TempDir("from-")
	if err != nil {
		return nil, nil, err
	}
	merged := filepath.Join(tmp, "merged")
	if err := os.Mkdir(merged, 0o755); err != nil {
		return nil, nil, err
	}
	empty := filepath.Join(tmp, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		return nil, nil, err
	}
	if err := b.readOnlyRoot(ctx, merged, dirs, empty); err != nil {
		os.RemoveAll(tmp)
		return nil, nil, err
	}
	root, err := safepath.Open(merged)
	if err != nil {
		unmount(merged)
		os.RemoveAll(tmp)
		return nil, nil, err
	}
	return rootFS{root}, func() {
		root.Close()
		unmount(merged)
		os.RemoveAll(tmp)
	}, nil
}

func matchFS(fsys fs.FS, pattern string) ([]string, error) {
	var out []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == "." {
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
	return out, err
}

// digestSources hashes what the sources would copy: names, types, modes,
// link targets, contents and mtimes (clamped to the epoch, since that is
// what lands in the layer). Owners are not hashed: the copy takes them
// from --chown, not from the source.
func (b *build) digestSources(srcs []copySource, fromContext bool) (string, error) {
	return b.digestSourcesTimes(srcs, fromContext, true)
}

// digestSourcesTimes is digestSources, with mtimes only when times (a
// bind mount's key has none: BuildKit's content checksum leaves them
// out, and they reach no layer).
func (b *build) digestSourcesTimes(srcs []copySource, fromContext, times bool) (string, error) {
	h := sha256.New()
	mt := func(t time.Time) int64 {
		if !times {
			return 0
		}
		u := t.Unix()
		if e := b.o.SourceDateEpoch; e != nil && u > *e {
			u = *e
		}
		return u
	}
	for _, src := range srcs {
		if src.file != "" {
			fmt.Fprintf(h, "url %q %o %d\n", src.name, src.mode, mt(src.mtime))
			if err := hashFile(h, os.DirFS(filepath.Dir(src.file)), filepath.Base(src.file)); err != nil {
				return "", err
			}
			continue
		}
		if src.fsys == nil {
			fmt.Fprintf(h, "data %q %o %d %d\n", src.name, src.mode, mt(src.mtime), len(src.data))
			h.Write(src.data)
			continue
		}
		top, err := fs.Stat(src.fsys, src.rel)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%q %s %d", src.rel, top.Mode(), mt(top.ModTime()))
		if top.Mode().IsRegular() {
			if err := hashFile(h, src.fsys, src.rel); err != nil {
				return "", err
			}
		}
		h.Write([]byte("\n"))
		if !top.IsDir() {
			continue
		}
		th := newTreeHasher(h)
		err = walkTree(src.fsys, src.rel, func(e *srcEntry) error {
			if fromContext && b.bctx.ignored(e.p) {
				if e.fi.IsDir() && !b.bctx.ignore.Exclusions() {
					return fs.SkipDir
				}
				return nil
			}
			line := fmt.Sprintf("%q %s %d", e.p, e.fi.Mode(), mt(e.fi.ModTime()))
			switch {
			case e.fi.Mode()&fs.ModeSymlink != 0:
				t, _ := readlinkEntry(e)
				th.text(fmt.Sprintf("%s -> %q\n", line, t))
			case e.fi.Mode().IsRegular():
				f, err := openEntry(e)
				if err != nil {
					return err
				}
				th.file(line+" sha256:", f)
			default:
				th.text(line + "\n")
			}
			return nil
		})
		if cerr := th.close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// treeHasher writes into h, in the order given, lines of text and, for
// each file, a line prefix and the hex sha256 of the file's content,
// which GOMAXPROCS workers compute meanwhile: a tree's files are hashed
// on every core, as the walk opens them, never more than a window of
// them ahead of h, so memory stays flat whatever the tree's size.
type treeHasher struct {
	h     hash.Hash
	jobs  chan hashJob
	order chan hashSlot
	done  chan error
	wg    sync.WaitGroup
}

// hashSlot is one line of h: text, then the file's digest and a newline
// when sum is not nil.
type hashSlot struct {
	text string
	sum  chan hashResult
}

type hashResult struct {
	sum []byte
	err error
}

type hashJob struct {
	f   *os.File
	out chan hashResult
}

// hashWindow is how many lines may wait for their file's digest.
const hashWindow = 64

func newTreeHasher(h hash.Hash) *treeHasher {
	t := &treeHasher{h: h, jobs: make(chan hashJob), order: make(chan hashSlot, hashWindow), done: make(chan error, 1)}
	for range max(runtime.GOMAXPROCS(0), 1) {
		t.wg.Add(1)
		go t.work()
	}
	go t.write()
	return t
}

func (t *treeHasher) work() {
	defer t.wg.Done()
	buf := make([]byte, 256<<10)
	for j := range t.jobs {
		s := sha256.New()
		var err error
		for {
			n, rerr := j.f.Read(buf)
			s.Write(buf[:n])
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				err = rerr
				break
			}
		}
		j.f.Close()
		j.out <- hashResult{s.Sum(nil), err}
	}
}

func (t *treeHasher) write() {
	var first error
	hexSum := make([]byte, 2*sha256.Size)
	for s := range t.order {
		t.h.Write([]byte(s.text))
		if s.sum == nil {
			continue
		}
		r := <-s.sum
		if r.err != nil && first == nil {
			first = r.err
		}
		hex.Encode(hexSum, r.sum)
		t.h.Write(hexSum)
		t.h.Write([]byte("\n"))
	}
	t.done <- first
}

// text adds a line (s ends in a newline).
func (t *treeHasher) text(s string) { t.order <- hashSlot{text: s} }

// file adds prefix and the digest of f's content; f is closed.
func (t *treeHasher) file(prefix string, f *os.File) {
	ch := make(chan hashResult, 1)
	t.order <- hashSlot{text: prefix, sum: ch}
	t.jobs <- hashJob{f, ch}
}

// close waits for every line to be written and returns the first error
// reading a file.
func (t *treeHasher) close() error {
	close(t.jobs)
	close(t.order)
	t.wg.Wait()
	return <-t.done
}

func hashFile(h hash.Hash, fsys fs.FS, p string) error {
	f, err := fsys.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(h, " ")
	_, err = io.Copy(h, f)
	return err
}

// copier writes sources into the merged root. Destinations are resolved
// as docker build resolves them in the container's root, with chroot
// semantics (internal/safepath): ".." stops at the root and an absolute
// symlink starts again at it, so /var/run/x lands at <root>/run/x and no
// symlink leads outside. Every change is then made with a *at call on the
// directory holding the name, with O_NOFOLLOW or AT_SYMLINK_NOFOLLOW:
// nothing is done through a path string.
type copier struct {
	ctx     context.Context
	root    *safepath.Root
	id      Identity
	chowned bool // --chown was given: id is its owner
	chmod   *dockerfile.Chmod
	exclude *patternmatcher.PatternMatcher // --exclude, matched below each source
	buf     []byte
	// fresh says the tree copied into is new and holds nothing the copy
	// could replace (copyIntoNewDir's first source): creates are not
	// preceded by removes, and a name met twice fails (O_EXCL).
	fresh bool
	// files, within copyTree (copyEntryAt), writes the regular files'
	// contents and attributes on other goroutines (fileWriters).
	files *fileWriters
}

// rel turns a destination into a name in the root: lexically cleaned, as
// docker's filepath.Join does before resolving, leading slash dropped.
func rel(p string) string {
	r := strings.TrimPrefix(path.Clean("/"+p), "/")
	if r == "" {
		return "."
	}
	return r
}

// isDir reports whether p is a directory in the root, following symlinks
// (the last one too) inside it.
func (c *copier) isDir(p string) bool {
	d, err := c.root.OpenDir(rel(p))
	if err != nil {
		return false
	}
	d.Close()
	return true
}

// mkdirAll opens directory p, making it and its missing parents first,
// owned by the identity; directories that exist keep their owner. The
// caller closes it.
func (c *copier) mkdirAll(p string) (*os.File, error) {
	return c.root.MkdirAllFunc(rel(p), 0o755, func(dirfd int, name string) error {
		if err := safepath.LchownAt(dirfd, name, int(c.id.UID), int(c.id.GID)); err != nil {
			return err
		}
		// BuildKit's copy makes missing destination directories with
		// an octal --chmod's mode (fsutil's copy.Copy), else 0755.
		if c.chmod == nil || c.chmod.Octal == nil {
			return nil
		}
		fd, err := safepath.OpenDirAt(dirfd, name)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), name)
		defer f.Close()
		return f.Chmod(*c.chmod.Octal)
	})
}

func (c *copier) copy(src copySource, dest string) error {
	endsInSlash := strings.HasSuffix(dest, "/")
	if src.fsys != nil && src.mode.IsDir() || src.archive {
		mk := c
		if src.archive {
			// BuildKit's unpack makes the destination 0755 and
			// applies no --chmod to what it extracts.
			plain := *c
			plain.chmod = nil
			mk = &plain
		}
		d, err := mk.mkdirAll(dest)
		if err != nil {
			return err
		}
		defer d.Close()
		if src.archive {
			return c.extract(src, d)
		}
		return c.copyTree(src.fsys, src.rel, d, src.include)
	}
	target := rel(dest)
	if endsInSlash || c.isDir(dest) {
		target = path.Join(target, src.name)
	}
	// A symlink as the last name is written through, inside the root,
	// as docker does (it resolves the whole destination first).
	target, err := c.root.Resolve(target)
	if err != nil {
		return err
	}
	dir, base := safepath.Split(target)
	if base == "." {
		return fmt.Errorf("%s: the destination is the root directory", dest)
	}
	d, err := c.mkdirAll(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if src.file != "" {
		f, err := os.Open(src.file)
		if err != nil {
			return err
		}
		defer f.Close()
		return c.writeFile(int(d.Fd()), base, f, src.mode, src.mtime)
	}
	if src.fsys == nil {
		return c.writeFile(int(d.Fd()), base, bytes.NewReader(src.data), src.mode, src.mtime)
	}
	return c.copyFile(src.fsys, src.rel, int(d.Fd()), base)
}

// directCopy lets copyIntoNewDir write below a new destination in the
// upper dir; tests turn it off to compare with the copy through the
// merged root. directCopies counts the copies it did.
var (
	directCopy   = true
	directCopies atomic.Int64
)

// treesOnly says whether every source is a directory whose contents are
// copied (no file, archive, heredoc or URL).
func treesOnly(srcs []copySource) bool {
	for _, src := range srcs {
		if src.fsys == nil || !src.mode.IsDir() || src.archive || src.file != "" {
			return false
		}
	}
	return len(srcs) > 0
}

// copyIntoNewDir copies the trees srcs into dest when the root does not
// have dest yet: it makes dest through the merged root (its missing
// parents and itself, as copy does, the kernel copying up the parents
// that exist), then writes below it in the upper dir directly
// (stepFiles). done is false, with nothing changed, when dest exists
// (then copy does the work through the merged root).
func (c *copier) copyIntoNewDir(srcs []copySource, dest string, toUpper func() (*safepath.Root, error)) (done bool, err error) {
	name, err := c.root.Resolve(rel(dest))
	if err != nil {
		return false, err
	}
	dir, base := safepath.Split(name)
	if base == "." {
		return false, nil
	}
	if pd, err := c.root.OpenDir(dir); err == nil {
		_, serr := safepath.LstatAt(int(pd.Fd()), base)
		pd.Close()
		if !errors.Is(serr, unix.ENOENT) {
			return false, nil
		}
	} else if !errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	d, err := c.mkdirAll(name)
	if err != nil {
		return false, err
	}
	d.Close()
	up, err := toUpper()
	if err != nil {
		return false, err
	}
	defer up.Close()
	// name has no symlink left (Resolve) and the kernel made every
	// directory on the way in the upper dir when it made name.
	d, err = up.OpenDir(name)
	if err != nil {
		return false, fmt.Errorf("opening %s in the upper dir: %w", name, err)
	}
	defer d.Close()
	cu := *c
	cu.root = up
	for i, src := range srcs {
		cu.fresh = i == 0
		if err := cu.copyTree(src.fsys, src.rel, d, src.include); err != nil {
			return false, fmt.Errorf("%s: %w", src.name, err)
		}
	}
	directCopies.Add(1)
	return true, nil
}

// copyTree copies the contents of dir src into the directory dst (whose
// own attributes it leaves alone, as BuildKit does). Below dst nothing is followed: a non-directory in
// the way of a directory is replaced, as docker's untar replaces it.
//
// Below the top, --exclude patterns (c.exclude) and COPY --parents'
// include pattern filter what is copied as BuildKit's fsutil copy filters
// it: an excluded directory is skipped whole unless a "!" pattern may
// bring back something under it, and a directory that is neither
// included nor excluded is made (with its source's attributes) only when
// something under it is copied.
func (c *copier) copyTree(fsys fs.FS, src string, dst *os.File, include *patternmatcher.PatternMatcher) (err error) {
	dstfd := int(dst.Fd())
	below := safepath.NewDirCache(dstfd)
	defer below.Close()
	fw := newFileWriters(c)
	cw := *c
	cw.files = fw
	c = &cw
	defer func() {
		if werr := fw.wait(); err == nil {
			err = werr
		}
	}()
	var dirs []madeDir
	var pending []pendingDir
	mkdir := func(r string, fi *statInfo) error {
		dir, base := safepath.Split(r)
		pfd, err := below.Open(dir)
		if err != nil {
			return err
		}
		if err := safepath.EnsureDirAt(pfd, base, 0o755); err != nil {
			return err
		}
		fd, err := safepath.OpenDirAt(pfd, base)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), r)
		err = c.fileAttrs(f, fi.Mode())
		f.Close()
		if err != nil {
			return err
		}
		dirs = append(dirs, madeDir{r, unix.Timespec(fi.st.Mtim)})
		return nil
	}
	// The destination directory itself keeps what it has, or what
	// mkdirAll gave it (0755 or an octal --chmod, the --chown owner), as
	// BuildKit's copy of a directory's contents leaves it: the source
	// directory's attributes are not copied onto it.
	err = walkTree(fsys, src, func(e *srcEntry) error {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		if err := fw.failed(); err != nil {
			return err
		}
		r := e.r
		if ctxIgnored(fsys, e.p, src) {
			if e.fi.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		for len(pending) > 0 && !strings.HasPrefix(r, pending[len(pending)-1].r+"/") {
			pending = pending[:len(pending)-1]
		}
		keep, descend := true, true
		if include != nil {
			keep, _ = include.MatchesOrParentMatches(r)
		}
		if c.exclude != nil {
			if ex, _ := c.exclude.MatchesOrParentMatches(r); ex {
				keep, descend = false, c.exclude.Exclusions()
			}
		}
		if !keep {
			if !e.fi.IsDir() {
				return nil
			}
			if !descend {
				return fs.SkipDir
			}
			pending = append(pending, pendingDir{r, e.fi})
			return nil
		}
		// What is copied brings the directories leading to it.
		for _, pd := range pending {
			if err := mkdir(pd.r, pd.fi); err != nil {
				return err
			}
		}
		pending = pending[:0]
		if e.fi.IsDir() {
			return mkdir(r, e.fi)
		}
		dir, base := safepath.Split(r)
		pfd, err := below.Open(dir)
		if err != nil {
			return err
		}
		return c.copyEntryAt(e, pfd, base)
	})
	if err != nil {
		return err
	}
	// Directory times last, deepest first (the writers create nothing).
	if err := fw.wait(); err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		dir, base := safepath.Split(dirs[i].r)
		pfd, err := below.Open(dir)
		if err != nil {
			return err
		}
		if err := safepath.UtimesAt(pfd, base, dirs[i].mtime); err != nil {
			return err
		}
	}
	return nil
}

// madeDir is a directory copyTree made, and the mtime it gets last.
type madeDir struct {
	r     string
	mtime unix.Timespec
}

// copyEntryAt copies the non-directory walkTree entry e to base in the
// directory dirfd.
func (c *copier) copyEntryAt(e *srcEntry, dirfd int, base string) error {
	mode, mtime := e.fi.Mode(), e.fi.ModTime()
	switch {
	case mode&fs.ModeSymlink != 0:
		t, err := readlinkEntry(e)
		if err != nil {
			return err
		}
		return c.symlink(t, dirfd, base, mtime)
	case mode.IsRegular():
		f, err := openEntry(e)
		if err != nil {
			return err
		}
		return c.files.write(f, dirfd, base, mode, mtime)
	}
	return fmt.Errorf("%s: unsupported file type %s", e.p, mode.Type())
}

// fileWriters copy the contents and attributes of the files copyTree
// creates, on GOMAXPROCS goroutines: the walk makes each name (in the
// directory's order, so the tree is the same) and hands the two open
// files over, so the data copy (copy_file_range) and fchown, fchmod and
// futimens of one file overlap the creates of the next. The first error
// stops the walk at its next entry.
type fileWriters struct {
	c    *copier
	jobs chan fileJob
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  error
	once sync.Once
}

type fileJob struct {
	src, dst *os.File
	mode     os.FileMode
	mtime    time.Time
}

func newFileWriters(c *copier) *fileWriters {
	w := &fileWriters{c: c, jobs: make(chan fileJob, 16)}
	for range max(runtime.GOMAXPROCS(0), 1) {
		w.wg.Add(1)
		go w.work()
	}
	return w
}

func (w *fileWriters) work() {
	defer w.wg.Done()
	for j := range w.jobs {
		if w.failed() != nil {
			j.src.Close()
			j.dst.Close()
			continue
		}
		if err := w.finish(j); err != nil {
			w.mu.Lock()
			if w.err == nil {
				w.err = err
			}
			w.mu.Unlock()
		}
	}
}

// finish copies j's content, owner, mode and mtime (FinishFile; chown
// before chmod, as writeFile) and closes both files.
func (w *fileWriters) finish(j fileJob) error {
	defer j.src.Close()
	return safepath.FinishFile(j.dst, j.src, nil, func(f *os.File) error { return w.c.fileAttrs(f, j.mode) }, j.mtime)
}

// write creates base in dirfd (replacing a non-directory there unless
// the tree is fresh) and hands src over; both are closed by a writer.
func (w *fileWriters) write(src *os.File, dirfd int, base string, mode os.FileMode, mtime time.Time) error {
	if !w.c.fresh {
		if err := safepath.RemoveNonDirAt(dirfd, base); err != nil {
			src.Close()
			return err
		}
	}
	dst, err := safepath.CreateAt(dirfd, base, 0o600)
	if err != nil {
		src.Close()
		return err
	}
	w.jobs <- fileJob{src, dst, mode, mtime}
	return nil
}

func (w *fileWriters) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// wait lets the writers finish and returns their first error.
func (w *fileWriters) wait() error {
	w.once.Do(func() {
		close(w.jobs)
		w.wg.Wait()
	})
	return w.failed()
}

// symlink makes base in dirfd a symlink to t (replacing a non-directory
// there) with the identity as owner and mtime.
func (c *copier) symlink(t string, dirfd int, base string, mtime time.Time) error {
	if err := safepath.RemoveNonDirAt(dirfd, base); err != nil {
		return err
	}
	if err := safepath.SymlinkAt(t, dirfd, base); err != nil {
		return err
	}
	if err := safepath.LchownAt(dirfd, base, int(c.id.UID), int(c.id.GID)); err != nil {
		return err
	}
	return safepath.UtimesAt(dirfd, base, safepath.Timespec(mtime))
}

// pendingDir is a directory copyTree makes only once something below it
// is copied.
type pendingDir struct {
	r  string
	fi *statInfo
}

// ignoredFS is an fs.FS that knows which of its paths .dockerignore
// excludes (the build context).
type ignoredFS interface{ ignoredPath(string) bool }

func ctxIgnored(fsys fs.FS, p, top string) bool {
	if p == top {
		return false
	}
	i, ok := fsys.(ignoredFS)
	return ok && i.ignoredPath(p)
}

// copyFile copies the file src of fsys, a COPY source named itself (a
// symlink there is followed inside the source tree), to base in the
// directory dirfd.
func (c *copier) copyFile(fsys fs.FS, src string, dirfd int, base string) error {
	fi, err := fs.Stat(fsys, src)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: unsupported file type %s", src, fi.Mode().Type())
	}
	f, err := fsys.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	return c.writeFile(dirfd, base, f, fi.Mode(), fi.ModTime())
}

// writeFile creates base in dirfd (replacing a non-directory there, never
// following a symlink) with r's content, the identity as owner, mode and
// mtime.
func (c *copier) writeFile(dirfd int, base string, r io.Reader, mode os.FileMode, mtime time.Time) error {
	return safepath.WriteFileAt(dirfd, base, r, c.buf, func(f *os.File) error { return c.fileAttrs(f, mode) }, mtime)
}

// fileAttrs gives the open file or directory f the identity as owner and
// mode's permission bits (or --chmod's), in that order: chown clears
// set-id bits.
func (c *copier) fileAttrs(f *os.File, mode os.FileMode) error {
	if err := f.Chown(int(c.id.UID), int(c.id.GID)); err != nil {
		return err
	}
	perm := mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	if c.chmod != nil {
		perm = c.chmod.Apply(mode)
	}
	return f.Chmod(perm)
}

// Archive magic numbers ADD recognises; decompression is done here in
// Go, never by a program from the image (CVE-2014-9357).
var (
	magicGzip  = []byte{0x1f, 0x8b}
	magicBzip2 = []byte("BZh")
	magicXz    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

func isArchive(fsys fs.FS, p string) bool {
	f, err := fsys.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	r, err := decompress(bufio.NewReader(f))
	if err != nil {
		return false
	}
	head := make([]byte, 512)
	n, _ := io.ReadFull(r, head)
	return n >= 262 && string(head[257:262]) == "ustar" || n == 512 && bytes.Count(head, []byte{0}) < 512 && validTarChecksum(head)
}

func validTarChecksum(h []byte) bool {
	var sum int64
	for i, c := range h {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int64(c)
	}
	want, err := strconv.ParseInt(strings.TrimSpace(strings.Trim(string(h[148:156]), "\x00 ")), 8, 64)
	return err == nil && want == sum
}

func decompress(br *bufio.Reader) (io.Reader, error) {
	head, _ := br.Peek(6)
	switch {
	case bytes.HasPrefix(head, magicGzip):
		return gzip.NewReader(br)
	case bytes.HasPrefix(head, magicBzip2):
		return bzip2.NewReader(br), nil
	case bytes.HasPrefix(head, magicXz):
		return xz.NewReader(br)
	case bytes.HasPrefix(head, magicZstd):
		d, err := zstd.NewReader(br)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return br, nil
}

// extract unpacks a local archive (ADD) into the directory d, with the
// layer unpacker's path checks and d as the unpacker's root, as docker's
// chrooted untar does: the archive's own symlinks and ".." stay in d.
// Ownership comes from the archive, or from --chown for every entry, as
// BuildKit's unpack applies it.
func (c *copier) extract(src copySource, d *os.File) error {
	var f io.ReadCloser
	var err error
	if src.file != "" {
		f, err = os.Open(src.file)
	} else {
		f, err = src.fsys.Open(src.rel)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := decompress(bufio.NewReader(f))
	if err != nil {
		return err
	}
	// The archive's root entry is skipped, as docker's untar does: dest
	// keeps its own owner and mode.
	pr, pw := io.Pipe()
	var owner *Identity
	if c.chowned {
		owner = &c.id
	}
	go func() { pw.CloseWithError(withoutRootEntry(r, pw, owner)) }()
	_, err = unpack.Apply(c.ctx, fmt.Sprintf("/proc/self/fd/%d", d.Fd()), pr)
	pr.CloseWithError(errors.New("unpack stopped"))
	return err
}

// withoutRootEntry copies the tar stream r to w, leaving out "." and "./",
// giving every entry owner when it is set.
func withoutRootEntry(r io.Reader, w io.Writer, owner *Identity) error {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return tw.Close()
		}
		if err != nil {
			return err
		}
		if path.Clean(h.Name) == "." || path.Clean(h.Name) == "/" {
			continue
		}
		if owner != nil {
			h.Uid, h.Gid, h.Uname, h.Gname = int(owner.UID), int(owner.GID), "", ""
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
}

// urlClient fetches ADD URLs: a server that does not answer within a
// minute, or a download that takes over an hour, fails the step.
var urlClient = &http.Client{
	Timeout: time.Hour,
	Transport: func() http.RoundTripper {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = time.Minute
		return t
	}(),
}

// maxURLBytes caps an ADD download.
const maxURLBytes = 4 << 30

// fetchURL downloads an ADD URL into a file in dir, streaming it (never
// held in memory) and hashing it in the same pass for --checksum. The
// file is named after the URL's last path element, gets mode 0600 and the
// Last-Modified time.
func fetchURL(ctx context.Context, raw, checksum, dir string) (copySource, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return copySource{}, err
	}
	alg, want, _ := strings.Cut(checksum, ":")
	if checksum != "" && (alg != "sha256" || len(want) != 64) {
		return copySource{}, fmt.Errorf("unsupported checksum %q (want sha256:<64 hex>)", checksum)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return copySource{}, err
	}
	resp, err := urlClient.Do(req)
	if err != nil {
		return copySource{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return copySource{}, fmt.Errorf("HTTP %s", resp.Status)
	}
	f, err := os.CreateTemp(dir, "body-")
	if err != nil {
		return copySource{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(resp.Body, maxURLBytes+1))
	if err != nil {
		return copySource{}, fmt.Errorf("downloading: %w", err)
	}
	if n > maxURLBytes {
		return copySource{}, errors.New("download larger than 4 GiB")
	}
	if err := f.Close(); err != nil {
		return copySource{}, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); checksum != "" && got != want {
		return copySource{}, fmt.Errorf("checksum mismatch: want %s, got sha256:%s", checksum, got)
	}
	name := path.Base(u.Path)
	if name == "/" || name == "." || name == "" {
		name = "__unnamed__"
	}
	mtime := time.Unix(0, 0)
	if lm := resp.Header.Get("Last-Modified"); lm != "" {
		if t, err := http.ParseTime(lm); err == nil {
			mtime = t
		}
	}
	return copySource{name: name, file: f.Name(), mode: 0o600, mtime: mtime}, nil
}
