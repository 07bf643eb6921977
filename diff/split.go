package diff

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/layercommit/layercommit/compat"
)

// Split cuts src into change sets of at most max tar bytes each, by path
// order, so that a change set too large for one blob (a registry's
// per-blob limit) becomes several layers applied one over the other. The
// parts, written by Write with the same opts and applied bottom first,
// give the file system src gives. It walks src once to plan the cuts; each
// part walks src again when it is written.
//
// Each part is a valid layer on its own:
//   - it starts with the directories above its first entry that earlier
//     parts wrote, repeated as plain directory entries (same owner, mode
//     and mtime, never opaque: the opaque marker went with the first
//     header, and repeating it would hide what earlier parts added);
//   - a hard link never points into an earlier part: Write starts each
//     part with an empty link table, so the first name of a link set in a
//     part carries the data. Docker's overlay2 (20.10 and 29) extracts a
//     layer into a dir of its own, where a link to an earlier layer's file
//     has no target: `docker load` of such an image fails with "link ...:
//     no such file or directory" (tried on both). A link set cut by a
//     part boundary becomes two files of equal content.
//
// Sizes are exact for the headers (they are encoded by Write's own rules)
// and file data rounded up to 512-byte blocks, plus the 1024-byte trailer
// of each part. A single entry larger than max gets a part of its own:
// a file is never cut. max is the uncompressed size; compressed blobs are
// smaller unless their data does not compress.
func Split(ctx context.Context, src Source, max int64, opts ...Option) ([]Source, error) {
	if max <= 0 {
		return nil, fmt.Errorf("splitting layer: bad size limit %d", max)
	}
	o := writeOptions{profile: compat.Default}
	for _, opt := range opts {
		opt(&o)
	}
	newRules := func() headerRules {
		r, _ := o.newRules() // the error is returned by the first call below
		return r
	}
	const trailer = 1024
	rules, err := o.newRules()
	if err != nil {
		return nil, fmt.Errorf("splitting layer: %w", err)
	}
	var (
		firsts    []string // the first path of each part after the first
		cur       int64    = trailer
		entries   int
		ancestors []dirSize // the directories above the current entry
	)
	err = src.Changes(ctx, func(c Change) error {
		for len(ancestors) > 0 && !strings.HasPrefix(c.Path, ancestors[len(ancestors)-1].path+"/") {
			ancestors = ancestors[:len(ancestors)-1]
		}
		n, err := entrySize(&rules, c)
		if err != nil {
			return err
		}
		if entries > 0 && cur+n > max {
			firsts = append(firsts, c.Path)
			rules = newRules()
			if n, err = entrySize(&rules, c); err != nil {
				return err
			}
			cur, entries = trailer, 0
			for _, a := range ancestors {
				cur += a.size
			}
		}
		cur += n
		entries++
		if c.Kind == Add && c.Info.IsDir() {
			plain := c
			plain.Opaque = false
			pr := newRules()
			size, err := entrySize(&pr, plain)
			if err != nil {
				return err
			}
			ancestors = append(ancestors, dirSize{path: c.Path, size: size})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("planning layer split: %w", err)
	}
	parts := make([]Source, len(firsts)+1)
	for i := range parts {
		p := &part{src: src}
		if i > 0 {
			p.from = firsts[i-1]
		}
		if i < len(firsts) {
			p.to = firsts[i]
		}
		parts[i] = p
	}
	return parts, nil
}

type dirSize struct {
	path string
	size int64
}

// entrySize is the number of tar bytes Write gives c: its header (PAX
// records included), an opaque marker, and the data in 512-byte blocks.
// A file Write stores as a sparse entry (WithSparse) is counted at its
// full size, so such parts come out smaller than the limit, never larger
// (a sparse map costs less than the holes it replaces).
func entrySize(r *headerRules, c Change) (int64, error) {
	xattrs, err := readXattrs(c, r.keptXattrs(c))
	if err != nil {
		return 0, err
	}
	hdr, marker := r.headers(c, xattrs)
	cw := &countWriter{}
	// A header is written at once by WriteHeader; the data that should
	// follow is not written (the writer is dropped), only counted.
	if err := tar.NewWriter(cw).WriteHeader(hdr); err != nil {
		return 0, fmt.Errorf("sizing header of %s: %w", c.Path, err)
	}
	if marker != nil {
		if err := tar.NewWriter(cw).WriteHeader(marker); err != nil {
			return 0, fmt.Errorf("sizing opaque marker of %s: %w", c.Path, err)
		}
	}
	data := int64(0)
	if hdr.Typeflag == tar.TypeReg {
		data = (hdr.Size + 511) &^ 511
	}
	return cw.n + data, nil
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(b []byte) (int, error) { w.n += int64(len(b)); return len(b), nil }

var _ io.Writer = (*countWriter)(nil)

// part is the changes of src from path from (inclusive, "" for the first
// part) to path to (exclusive, "" for the last), in walk order, preceded
// by the directories above its first entry that come before from.
type part struct {
	src      Source
	from, to string
}

func (p *part) Changes(ctx context.Context, fn ChangeFunc) error {
	var above []Change // directories above the current entry, before from
	started := false
	return p.src.Changes(ctx, func(c Change) error {
		if p.to != "" && !walkLess(c.Path, p.to) {
			return nil
		}
		if p.from != "" && walkLess(c.Path, p.from) {
			for len(above) > 0 && !strings.HasPrefix(c.Path, above[len(above)-1].Path+"/") {
				above = above[:len(above)-1]
			}
			if c.Kind == Add && c.Info.IsDir() {
				d := c
				d.Opaque = false
				above = append(above, d)
			}
			return nil
		}
		if !started {
			started = true
			for _, a := range above {
				if strings.HasPrefix(c.Path, a.Path+"/") {
					if err := fn(a); err != nil {
						return err
					}
				}
			}
			above = nil
		}
		return fn(c)
	})
}

// walkLess reports whether path a comes before path b in the walk order
// of the package doc: depth first, parents before children, the names of
// each directory sorted by raw bytes. This is the order of the paths
// compared component by component.
func walkLess(a, b string) bool {
	for {
		ai, bi := strings.IndexByte(a, '/'), strings.IndexByte(b, '/')
		ac, bc := a, b
		if ai >= 0 {
			ac = a[:ai]
		}
		if bi >= 0 {
			bc = b[:bi]
		}
		if ac != bc {
			return ac < bc
		}
		if ai < 0 || bi < 0 {
			// One is a prefix (the parent) of the other, or they are equal.
			return ai < 0 && bi >= 0
		}
		a, b = a[ai+1:], b[bi+1:]
	}
}
