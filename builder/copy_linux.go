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
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"

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
	data    []byte // heredoc content or downloaded URL body
	mode    os.FileMode
	mtime   time.Time
	archive bool // ADD: extract instead of copying
}

// copyStep runs COPY or ADD.
func (b *build) copyStep(ctx context.Context, s *stageState, in *CopyInstr) error {
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
	var chmod *os.FileMode
	if in.Chmod != "" {
		v, _ := strconv.ParseUint(in.Chmod, 8, 32)
		m := os.FileMode(v)
		chmod = &m
	}
	// Where the sources come from: the context, a stage or an image.
	var srcFS fs.FS = contextFS{b.bctx}
	var srcCleanup func()
	fromContext := in.From == ""
	if !fromContext {
		from, err := b.expand(s, line, in.From)
		if err != nil {
			return err
		}
		fsys, cleanup, err := b.fromFS(ctx, s, from)
		if err != nil {
			return lineErr(line, "%s --from=%s: %v", in.Name(), from, err)
		}
		srcFS, srcCleanup = fsys, cleanup
		defer srcCleanup()
	}
	heredocs := map[string]Heredoc{}
	for _, h := range in.Heredocs {
		heredocs[h.Name] = h
	}
	var srcs []copySource
	var names []string
	for _, raw := range in.Sources {
		if h, ok := heredocs[strings.TrimPrefix(strings.TrimPrefix(raw, "<<"), "-")]; ok && strings.HasPrefix(raw, "<<") {
			content := h.Content
			if h.Expand {
				if content, err = b.expand(s, line, content); err != nil {
					return err
				}
			}
			srcs = append(srcs, copySource{name: h.Name, data: []byte(content), mode: 0o644, mtime: time.Unix(0, 0)})
			names = append(names, "<<"+h.Name)
			continue
		}
		src, err := b.expand(s, line, raw)
		if err != nil {
			return err
		}
		if in.Add && (strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://")) {
			cs, err := fetchURL(ctx, src, in.Checksum)
			if err != nil {
				return lineErr(line, "ADD %s: %v", src, err)
			}
			srcs = append(srcs, cs)
			names = append(names, src)
			continue
		}
		if in.Checksum != "" {
			return lineErr(line, "ADD --checksum is only supported for URLs")
		}
		rel, err := contextPath(src)
		if err != nil {
			return lineErr(line, "%v", err)
		}
		var matches []string
		if hasWildcard(rel) {
			if fromContext {
				matches, err = b.bctx.match(rel)
			} else {
				matches, err = matchFS(srcFS, rel)
			}
			if err != nil {
				return lineErr(line, "%v", err)
			}
			if len(matches) == 0 {
				return lineErr(line, "%s failed: no source files were specified", in.Name())
			}
		} else {
			if fromContext && b.bctx.ignored(rel) {
				return lineErr(line, "%s failed: file not found in build context or excluded by .dockerignore: stat %s: file does not exist", in.Name(), src)
			}
			fi, err := fs.Stat(srcFS, rel)
			if err != nil {
				if strings.Contains(err.Error(), "escapes") {
					return lineErr(line, "%s failed: forbidden path outside the build context: %s", in.Name(), src)
				}
				return lineErr(line, "%s failed: file not found in build context or excluded by .dockerignore: stat %s: file does not exist", in.Name(), src)
			}
			_ = fi
			matches = []string{rel}
		}
		for _, m := range matches {
			fi, err := fs.Stat(srcFS, m)
			if err != nil {
				return lineErr(line, "%s failed: %v", in.Name(), err)
			}
			cs := copySource{name: path.Base(m), fsys: srcFS, rel: m, mode: fi.Mode(), mtime: fi.ModTime()}
			if in.Add && fi.Mode().IsRegular() {
				cs.archive = isArchive(srcFS, m)
			}
			srcs = append(srcs, cs)
		}
		names = append(names, src)
	}
	multi := len(srcs) > 1
	for _, r := range in.Sources {
		if hasWildcard(r) {
			multi = multi || len(srcs) > 1
		}
	}
	if multi && !strings.HasSuffix(dest, "/") {
		return lineErr(line, "When using %s with more than one source file, the destination must be a directory and end with a /", in.Name())
	}
	c := s.config()
	destAbs := dest
	if !path.IsAbs(dest) {
		destAbs = path.Join("/", c.WorkingDir, dest)
		if strings.HasSuffix(dest, "/") || dest == "." {
			destAbs += "/"
		}
	}
	digest, err := b.digestSources(srcs, fromContext)
	if err != nil {
		return lineErr(line, "%v", err)
	}
	opts, flag := "", ""
	if chown != "" {
		opts += " chown=" + chown
		// The legacy builder writes the flag with no space after it.
		flag = "--chown=" + chown
	}
	if chmod != nil {
		opts += fmt.Sprintf(" chmod=%04o", *chmod)
	}
	kind := "file"
	if len(srcs) > 1 {
		kind = "multi"
	} else if len(srcs) == 1 && srcs[0].fsys != nil && srcs[0].mode.IsDir() {
		kind = "dir"
	}
	createdBy := s.nopCommentString(fmt.Sprintf("%s %s%s:%s in %s ", in.Name(), flag, kind, digest, dest))
	key := b.stepKey(s, createdBy+opts+"\x00"+strings.Join(names, "\x00")+"\x00from="+in.From, digest)
	if b.fromCache(s, key) {
		return nil
	}
	return b.inOverlay(ctx, s, key, createdBy, line, func(root *os.Root) error {
		id := Identity{}
		if chown != "" {
			if id, err = chownIdentity(root.FS(), chown); err != nil {
				return lineErr(line, "%v", err)
			}
		}
		cp := &copier{root: root, id: id, chmod: chmod, ctx: ctx, buf: make([]byte, 1<<20)}
		for _, src := range srcs {
			if err := cp.copy(src, destAbs); err != nil {
				return lineErr(line, "%s %s: %v", in.Name(), src.name, err)
			}
		}
		return nil
	})
}

// fromFS gives COPY --from's tree: a stage's or an image's root, read
// through a read-only overlay mount of its layers.
func (b *build) fromFS(ctx context.Context, s *stageState, from string) (fs.FS, func(), error) {
	var dirs []string
	var err error
	if j, ok := b.stageIndex(from, s.stage.Index); ok {
		dirs, err = b.lowerDirs(ctx, b.stages[j])
	} else {
		img, oerr := b.openImage(ctx, from)
		if oerr != nil {
			return nil, nil, oerr
		}
		dirs, err = b.imageDirs(ctx, img)
	}
	if err != nil {
		return nil, nil, err
	}
	tmp, err := b.st.tempDir("from-")
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
	// A read-only overlay needs at least two lowers.
	if err := mountOverlay(append(dirs, empty), "", "", merged); err != nil {
		os.RemoveAll(tmp)
		return nil, nil, err
	}
	root, err := os.OpenRoot(merged)
	if err != nil {
		unmount(merged)
		os.RemoveAll(tmp)
		return nil, nil, err
	}
	return root.FS(), func() {
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
// what lands in the layer).
func (b *build) digestSources(srcs []copySource, fromContext bool) (string, error) {
	h := sha256.New()
	mt := func(t time.Time) int64 {
		u := t.Unix()
		if e := b.o.SourceDateEpoch; e != nil && u > *e {
			u = *e
		}
		return u
	}
	for _, src := range srcs {
		if src.fsys == nil {
			fmt.Fprintf(h, "data %q %o %d %d\n", src.name, src.mode, mt(src.mtime), len(src.data))
			h.Write(src.data)
			continue
		}
		err := fs.WalkDir(src.fsys, src.rel, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if fromContext && p != src.rel && b.bctx.ignored(p) {
				if d.IsDir() && !b.bctx.ignore.Exclusions() {
					return fs.SkipDir
				}
				return nil
			}
			fi, err := fs.Stat(src.fsys, p)
			if p != src.rel || !fi.Mode().IsRegular() && !fi.IsDir() {
				fi, err = d.Info()
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%q %s %d", p, fi.Mode(), mt(fi.ModTime()))
			if st, ok := fi.Sys().(*unix.Stat_t); ok && !fromContext {
				fmt.Fprintf(h, " %d:%d", st.Uid, st.Gid)
			}
			switch {
			case fi.Mode()&fs.ModeSymlink != 0:
				t, _ := fs.ReadLink(src.fsys, p)
				fmt.Fprintf(h, " -> %q", t)
			case fi.Mode().IsRegular():
				if err := hashFile(h, src.fsys, p); err != nil {
					return err
				}
			}
			h.Write([]byte("\n"))
			return nil
		})
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
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

// chownIdentity resolves --chown as the legacy builder does: a lone user
// is also taken as the group; names are looked up in the image's own
// passwd and group files.
func chownIdentity(fsys fs.FS, spec string) (Identity, error) {
	user, group, ok := strings.Cut(spec, ":")
	if !ok {
		group = user
	}
	uid, err := lookupID(fsys, "etc/passwd", user)
	if err != nil {
		return Identity{}, fmt.Errorf("unable to convert uid/gid chown string to host mapping: can't find uid for user %s: %v", user, err)
	}
	gid, err := lookupID(fsys, "etc/group", group)
	if err != nil {
		return Identity{}, fmt.Errorf("unable to convert uid/gid chown string to host mapping: can't find gid for group %s: %v", group, err)
	}
	return Identity{UID: uid, GID: gid}, nil
}

func lookupID(fsys fs.FS, file, name string) (uint32, error) {
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return uint32(n), nil
	}
	for _, row := range readColonFile(fsys, file) {
		if len(row) >= 3 && row[0] == name {
			n, err := strconv.ParseUint(row[2], 10, 32)
			if err != nil {
				return 0, err
			}
			return uint32(n), nil
		}
	}
	return 0, errors.New("no such user or group in the image")
}

// copier writes sources into the merged root. Every path is resolved in
// the root: symlinks in the image cannot lead outside it.
type copier struct {
	ctx   context.Context
	root  *os.Root
	id    Identity
	chmod *os.FileMode
	buf   []byte
}

func rel(p string) string {
	r := strings.TrimPrefix(path.Clean("/"+p), "/")
	if r == "" {
		return "."
	}
	return r
}

// isDir reports whether p is an existing directory in the root.
func (c *copier) isDir(p string) bool {
	fi, err := c.root.Stat(rel(p))
	return err == nil && fi.IsDir()
}

// mkdirAll makes p and its missing parents, owned by the identity.
func (c *copier) mkdirAll(p string) error {
	r := rel(p)
	if r == "." {
		return nil
	}
	var missing []string
	for q := r; q != "."; q = path.Dir(q) {
		if _, err := c.root.Stat(q); err == nil {
			break
		}
		missing = append([]string{q}, missing...)
	}
	for _, q := range missing {
		if err := c.root.Mkdir(q, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := c.root.Lchown(q, int(c.id.UID), int(c.id.GID)); err != nil {
			return err
		}
	}
	return nil
}

func (c *copier) copy(src copySource, dest string) error {
	endsInSlash := strings.HasSuffix(dest, "/")
	if src.fsys != nil && src.mode.IsDir() {
		if err := c.mkdirAll(dest); err != nil {
			return err
		}
		return c.copyTree(src.fsys, src.rel, rel(dest))
	}
	if src.archive {
		if err := c.mkdirAll(dest); err != nil {
			return err
		}
		return c.extract(src, dest)
	}
	target := dest
	if endsInSlash || c.isDir(dest) {
		target = path.Join(dest, src.name)
	}
	if err := c.mkdirAll(path.Dir(target)); err != nil {
		return err
	}
	if src.fsys == nil {
		return c.writeFile(rel(target), bytes.NewReader(src.data), src.mode, src.mtime)
	}
	return c.copyEntry(src.fsys, src.rel, rel(target), true)
}

// copyTree copies the contents of dir src into dir dst (which exists),
// giving dst the source dir's mode and times, as the legacy builder's
// tar-based copy does.
func (c *copier) copyTree(fsys fs.FS, src, dst string) error {
	var dirs [][2]string
	err := fs.WalkDir(fsys, src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := c.ctx.Err(); err != nil {
			return err
		}
		r, _ := filepath.Rel(src, p)
		target := path.Join(dst, filepath.ToSlash(r))
		if ctxIgnored(fsys, p, src) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if target != dst {
				if err := c.root.Mkdir(target, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
					return err
				}
			}
			if err := c.attrs(target, fi.Mode(), fi.ModTime(), false); err != nil {
				return err
			}
			dirs = append(dirs, [2]string{target, p})
			return nil
		}
		return c.copyEntry(fsys, p, target, false)
	})
	if err != nil {
		return err
	}
	// Directory times last, deepest first.
	for i := len(dirs) - 1; i >= 0; i-- {
		fi, err := fs.Stat(fsys, dirs[i][1])
		if err != nil {
			return err
		}
		if err := c.root.Chtimes(dirs[i][0], fi.ModTime(), fi.ModTime()); err != nil {
			return err
		}
	}
	return nil
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

// copyEntry copies one non-directory entry; follow resolves a symlink
// named as a COPY source itself (inside the source tree).
func (c *copier) copyEntry(fsys fs.FS, src, dst string, follow bool) error {
	var fi fs.FileInfo
	var err error
	if follow {
		fi, err = fs.Stat(fsys, src)
	} else {
		fi, err = fs.Lstat(fsys, src)
	}
	if err != nil {
		return err
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		t, err := fs.ReadLink(fsys, src)
		if err != nil {
			return err
		}
		c.removeExisting(dst)
		if err := c.root.Symlink(t, dst); err != nil {
			return err
		}
		if err := c.root.Lchown(dst, int(c.id.UID), int(c.id.GID)); err != nil {
			return err
		}
		return c.lutimes(dst, fi.ModTime())
	case fi.Mode().IsRegular():
		f, err := fsys.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		return c.writeFile(dst, f, fi.Mode(), fi.ModTime())
	}
	return fmt.Errorf("%s: unsupported file type %s", src, fi.Mode().Type())
}

func (c *copier) removeExisting(dst string) {
	if fi, err := c.root.Lstat(dst); err == nil && !fi.IsDir() {
		c.root.Remove(dst)
	}
}

func (c *copier) writeFile(dst string, r io.Reader, mode os.FileMode, mtime time.Time) error {
	c.removeExisting(dst)
	f, err := c.root.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.CopyBuffer(f, r, c.buf); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return c.attrs(dst, mode, mtime, true)
}

func (c *copier) attrs(dst string, mode os.FileMode, mtime time.Time, times bool) error {
	if err := c.root.Lchown(dst, int(c.id.UID), int(c.id.GID)); err != nil {
		return err
	}
	perm := mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	if c.chmod != nil {
		perm = *c.chmod
	}
	if err := c.root.Chmod(dst, perm); err != nil {
		return err
	}
	if times {
		return c.root.Chtimes(dst, mtime, mtime)
	}
	return nil
}

func (c *copier) lutimes(dst string, mtime time.Time) error {
	dir, err := c.root.OpenRoot(path.Dir(dst))
	if err != nil {
		return err
	}
	defer dir.Close()
	f, err := dir.Open(".")
	if err != nil {
		return err
	}
	defer f.Close()
	ts := []unix.Timespec{unix.NsecToTimespec(mtime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	return unix.UtimesNanoAt(int(f.Fd()), path.Base(dst), ts, unix.AT_SYMLINK_NOFOLLOW)
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

// extract unpacks a local archive (ADD) into dest inside the root, with
// the layer unpacker's path checks; ownership comes from the archive.
func (c *copier) extract(src copySource, dest string) error {
	f, err := src.fsys.Open(src.rel)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := decompress(bufio.NewReader(f))
	if err != nil {
		return err
	}
	d, err := c.root.Open(rel(dest))
	if err != nil {
		return err
	}
	defer d.Close()
	// The archive's root entry is skipped, as docker's untar does: dest
	// keeps its own owner and mode.
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(withoutRootEntry(r, pw)) }()
	_, err = unpack.Apply(c.ctx, fmt.Sprintf("/proc/self/fd/%d", d.Fd()), pr)
	pr.CloseWithError(errors.New("unpack stopped"))
	return err
}

// withoutRootEntry copies the tar stream r to w, leaving out "." and "./".
func withoutRootEntry(r io.Reader, w io.Writer) error {
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
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
}

// fetchURL downloads an ADD URL. The file is named after the URL's last
// path element, gets mode 0600 and the Last-Modified time.
func fetchURL(ctx context.Context, raw, checksum string) (copySource, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return copySource{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return copySource{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return copySource{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return copySource{}, fmt.Errorf("HTTP %s", resp.Status)
	}
	const maxURL = 4 << 30
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxURL+1))
	if err != nil {
		return copySource{}, err
	}
	if len(data) > maxURL {
		return copySource{}, errors.New("download larger than 4 GiB")
	}
	if checksum != "" {
		alg, want, _ := strings.Cut(checksum, ":")
		sum := sha256.Sum256(data)
		if alg != "sha256" || hex.EncodeToString(sum[:]) != want {
			return copySource{}, fmt.Errorf("checksum mismatch: want %s, got sha256:%x", checksum, sum)
		}
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
	return copySource{name: name, data: data, mode: 0o600, mtime: mtime}, nil
}
