package diff

import (
	"archive/tar"
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/layercommit/layercommit/compat"
)

// Sparse entries (--sparse): a regular file with holes is written as a
// PAX sparse entry, GNU sparse format 1.0, the one GNU tar writes with
// --sparse --sparse-version=1.0 and Go's archive/tar, GNU tar and bsdtar
// read:
//
//	PAX header:  GNU.sparse.major=1 GNU.sparse.minor=0
//	             GNU.sparse.name=<the real name> GNU.sparse.realsize=<size>
//	             (and the entry's other records: xattrs, ids, mtime)
//	USTAR header: typeflag '0', name <dir>/GNUSparseFile.0/<base>,
//	             size = the bytes that follow (map + data)
//	data:        the map as decimal text, "N\n" then "offset\nlength\n"
//	             for each data segment, NUL-padded to 512 bytes; then the
//	             segments' bytes back to back; then the usual padding.
//
// The last segment always ends at realsize (a zero-length one at realsize
// when the file ends in a hole), so that readers make the file its full
// size, as GNU tar does.
//
// Why our own writer: archive/tar's Writer cannot write sparse entries
// (its support is disabled, golang.org/issue/22735) and it silently drops
// GNU.sparse.* keys given in Header.PAXRecords, so no header it writes can
// announce one. These two header blocks are therefore laid out here, field
// by field as archive/tar lays out its own PAX headers; every other entry
// still goes through archive/tar.

// segment is one data extent of a sparse file.
type segment struct{ off, len int64 }

// maxSparseSegments bounds a sparse map (about 40 bytes each, so under
// 1 MiB of map, the PAX size archive/tar's reader accepts): a file with
// more data extents has its smallest holes written as zeros.
const maxSparseSegments = 16 << 10

// ErrSparseUnsupported is returned for --sparse under a profile whose
// engine cannot apply a sparse entry.
var ErrSparseUnsupported = errors.New("the profile's engine cannot apply sparse entries")

// WithSparse writes regular files that have holes (found with SEEK_DATA
// and SEEK_HOLE) as PAX sparse entries; without it, bytes are the
// profile's engine's (holes written as zeros). The bytes then depend on
// where the file system keeps holes, not only on the content: the same
// file copied densely gives a different layer.
func WithSparse() Option { return func(o *writeOptions) { o.sparse = true } }

// Options turns the tar-level command-line options into Write options
// (WithCompat(p) not among them), checking them first: an xattrs list (""
// for the profile's) and --sparse, refused under a profile whose engine
// cannot apply sparse entries.
func Options(p compat.Profile, xattrs string, sparse bool) ([]Option, error) {
	var opts []Option
	if xattrs != "" {
		x, err := ParseXattrs(xattrs)
		if err != nil {
			return nil, fmt.Errorf("--xattrs: %w", err)
		}
		opts = append(opts, WithXattrs(x))
	}
	if sparse {
		if p.NoSparse {
			return nil, fmt.Errorf("--sparse: %w (profile %s)", ErrSparseUnsupported, p.Name)
		}
		opts = append(opts, WithSparse())
	}
	return opts, nil
}

// mergeSegments keeps at most max segments by filling the smallest holes
// (ties: the earliest first), so the map stays bounded.
func mergeSegments(segs []segment, max int) []segment {
	if len(segs) <= max {
		return segs
	}
	type hole struct {
		i    int // the hole after segs[i]
		size int64
	}
	holes := make([]hole, len(segs)-1)
	for i := range holes {
		holes[i] = hole{i, segs[i+1].off - segs[i].off - segs[i].len}
	}
	sort.SliceStable(holes, func(a, b int) bool { return holes[a].size < holes[b].size })
	fill := make([]bool, len(segs))
	for _, h := range holes[:len(segs)-max] {
		fill[h.i] = true
	}
	out := []segment{segs[0]}
	for i := 1; i < len(segs); i++ {
		if fill[i-1] {
			last := &out[len(out)-1]
			last.len = segs[i].off + segs[i].len - last.off
			continue
		}
		out = append(out, segs[i])
	}
	return out
}

// sparseMap is the map text of segs, NUL-padded to a whole block.
func sparseMap(segs []segment) []byte {
	var b strings.Builder
	b.WriteString(strconv.Itoa(len(segs)) + "\n")
	for _, s := range segs {
		b.WriteString(strconv.FormatInt(s.off, 10) + "\n" + strconv.FormatInt(s.len, 10) + "\n")
	}
	out := []byte(b.String())
	return append(out, make([]byte, padding(int64(len(out))))...)
}

func padding(n int64) int64 { return -n & (blockSize - 1) }

const blockSize = 512

// USTAR numeric field limits.
const (
	maxOctal8  = 1<<21 - 1 // mode, uid, gid: seven digits
	maxOctal12 = 1<<33 - 1 // size, mtime: eleven digits
)

// sparseHeaders returns the two header blocks and the PAX data of h (a
// regular file of h.Size bytes, from headers) as a sparse entry whose body
// is physical bytes long.
func sparseHeaders(h *tar.Header, physical int64) ([]byte, error) {
	recs := map[string]string{}
	for k, v := range h.PAXRecords {
		recs[k] = v
	}
	dir, base := path.Split(h.Name)
	name := dir + "GNUSparseFile.0/" + base
	recs["GNU.sparse.major"] = "1"
	recs["GNU.sparse.minor"] = "0"
	recs["GNU.sparse.name"] = h.Name
	recs["GNU.sparse.realsize"] = strconv.FormatInt(h.Size, 10)
	if len(name) > 100 {
		// The real name is in GNU.sparse.name; path only keeps readers
		// that do not know sparse entries from a cut name.
		recs["path"] = name
		name = name[:100]
	}
	if h.Uid > maxOctal8 {
		recs["uid"] = strconv.Itoa(h.Uid)
	}
	if h.Gid > maxOctal8 {
		recs["gid"] = strconv.Itoa(h.Gid)
	}
	mtime := h.ModTime.Unix()
	if mtime < 0 || mtime > maxOctal12 {
		recs["mtime"] = strconv.FormatInt(mtime, 10)
	}
	if physical > maxOctal12 {
		recs["size"] = strconv.FormatInt(physical, 10)
	}
	for k, v := range map[string]string{"uname": h.Uname, "gname": h.Gname} {
		if len(v) > 31 || !isASCII(v) {
			recs[k] = v
		}
	}
	keys := make([]string, 0, len(recs))
	for k := range recs {
		if strings.Contains(k, "=") || strings.Contains(k, "\x00") {
			return nil, fmt.Errorf("%w: PAX key %q", ErrUnrepresentable, k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var data strings.Builder
	for _, k := range keys {
		data.WriteString(paxRecord(k, recs[k]))
	}

	out := make([]byte, 0, 3*blockSize+data.Len())
	// The extended header, as archive/tar writes its own: named
	// <dir>/PaxHeaders.0/<base>, mode, ids and mtime 0.
	x := newBlock()
	x.str(0, 100, strings.TrimRight(truncate(dir+"PaxHeaders.0/"+base, 100), "/"))
	x.octal(100, 8, 0)
	x.octal(108, 8, 0)
	x.octal(116, 8, 0)
	x.octal(124, 12, int64(data.Len()))
	x.octal(136, 12, 0)
	x[156] = tar.TypeXHeader
	out = append(out, x.sum()...)
	out = append(out, data.String()...)
	out = append(out, make([]byte, padding(int64(data.Len())))...)

	u := newBlock()
	u.str(0, 100, name)
	u.octal(100, 8, h.Mode)
	u.octal(108, 8, int64(min(h.Uid, maxOctal8)))
	u.octal(116, 8, int64(min(h.Gid, maxOctal8)))
	u.octal(124, 12, min(physical, maxOctal12))
	u.octal(136, 12, min(max(mtime, 0), maxOctal12))
	u[156] = tar.TypeReg
	u.str(265, 32, truncate(toASCII(h.Uname), 31))
	u.str(297, 32, truncate(toASCII(h.Gname), 31))
	u.octal(329, 8, 0)
	u.octal(337, 8, 0)
	return append(out, u.sum()...), nil
}

// block is one USTAR header block.
type block []byte

func newBlock() block {
	b := make(block, blockSize)
	copy(b[257:], "ustar\x0000")
	return b
}

func (b block) str(off, n int, s string) { copy(b[off:off+n], s) }

// octal writes v as n-1 zero-padded octal digits and a NUL.
func (b block) octal(off, n int, v int64) {
	s := strconv.FormatInt(v, 8)
	copy(b[off:off+n-1], strings.Repeat("0", n-1-len(s))+s)
}

// sum fills in the checksum: the byte sum with the field taken as spaces,
// six octal digits, NUL, space.
func (b block) sum() []byte {
	copy(b[148:156], "        ")
	var s int64
	for _, c := range b {
		s += int64(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", s))
	return b
}

// paxRecord is "LEN KEY=VALUE\n", LEN counting itself.
func paxRecord(k, v string) string {
	const padding = 3 // ' ', '=', '\n'
	size := len(k) + len(v) + padding
	size += len(strconv.Itoa(size))
	rec := strconv.Itoa(size) + " " + k + "=" + v + "\n"
	if len(rec) != size { // the length's own digits carried over
		size = len(rec)
		rec = strconv.Itoa(size) + " " + k + "=" + v + "\n"
	}
	return rec
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 || s[i] == 0 {
			return false
		}
	}
	return true
}

func toASCII(s string) string {
	if isASCII(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] < 0x80 && s[i] != 0 {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
