package unpack

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Sparse entries (PAX, GNU sparse format 1.0, as diff.WithSparse writes
// them): archive/tar's Reader reads them but keeps their map to itself and
// hands out the holes as zeros, so a 64 GB file with a few data blocks
// would be read as 64 GB. Apply therefore reads the layer through a tap
// that records the bytes Next consumes; the map is the blocks after the
// entry's USTAR header. check validates that map from the bytes alone,
// before anything is made; then the data segments are read straight from
// the stream and written at their offsets, the file is truncated to its
// real size (the holes are never written), and the tap owes archive/tar
// the bytes it took, so the Reader's own skip of the entry stays in step.

// segment is one data extent of a sparse file.
type segment struct{ off, len int64 }

// sparseEntry is a checked sparse map.
type sparseEntry struct {
	realsize int64
	segs     []segment
	data     int64 // the data bytes that follow the map in the stream
}

// ErrSparseMap is a sparse entry whose map is malformed or hostile.
var ErrSparseMap = errors.New("invalid sparse map in layer")

// Sparse map limits: the real size a sparse file may claim, and the
// segments of one map.
const (
	MaxSparseSize     = 1 << 50 // 1 PiB, above any file system's file
	maxSparseSegments = 1 << 20
)

// tap is the reader under Apply's tar reader: it counts the stream's
// bytes, records them while asked to, and serves owed bytes as zeros
// without reading (the data of a sparse entry Apply took itself).
type tap struct {
	r         io.Reader
	n         int64 // bytes taken from r
	recording bool
	rec       bytes.Buffer
	recStart  int64
	owed      int64
}

// maxRecord bounds what one Next may read: headers (archive/tar allows
// 1 MiB of PAX records) and a sparse map.
const maxRecord = 2<<20 + 64<<10

func (t *tap) Read(p []byte) (int, error) {
	if t.owed > 0 {
		n := int(min(int64(len(p)), t.owed))
		clear(p[:n])
		t.owed -= int64(n)
		return n, nil
	}
	n, err := t.r.Read(p)
	t.n += int64(n)
	if t.recording {
		if t.rec.Len()+n > maxRecord {
			t.recording = false
			t.rec.Reset()
			t.rec.WriteString("\x00overflow")
		} else {
			t.rec.Write(p[:n])
		}
	}
	return n, err
}

func (t *tap) record() {
	t.rec.Reset()
	t.recording, t.recStart = true, t.n
}

// recorded returns what was read since record and where it started.
func (t *tap) recorded() ([]byte, int64) {
	t.recording = false
	return t.rec.Bytes(), t.recStart
}

// sparseMapBlocks returns the map blocks and the data size of a PAX 1.0
// sparse entry from the bytes its Next read (rec, starting at stream offset
// start): past the previous entry's padding, header blocks with data (PAX
// 'x', GNU 'L' and 'K') are skipped; the blocks after the first other
// header are the map, and that header's size is map plus data.
func sparseMapBlocks(rec []byte, start int64) ([]byte, int64, error) {
	i := int(-start & 511)
	for {
		if i+512 > len(rec) {
			return nil, 0, fmt.Errorf("%w: no header before the map", ErrSparseMap)
		}
		blk := rec[i : i+512]
		size, err := octalField(blk[124:136])
		if err != nil {
			return nil, 0, err
		}
		i += 512
		switch blk[156] {
		case 'x', 'L', 'K':
			if size > int64(len(rec)-i) {
				return nil, 0, fmt.Errorf("%w: header data past what was read", ErrSparseMap)
			}
			i += int(size + (-size & 511))
			continue
		}
		m := rec[i:]
		if int64(len(m)) > size {
			return nil, 0, fmt.Errorf("%w: map of %d bytes in an entry of %d", ErrSparseMap, len(m), size)
		}
		return m, size - int64(len(m)), nil
	}
}

// octalField reads a USTAR numeric field (octal, or base-256 with the high
// bit set).
func octalField(b []byte) (int64, error) {
	if len(b) > 0 && b[0]&0x80 != 0 {
		if b[0] != 0x80 || len(b) < 9 {
			return 0, fmt.Errorf("%w: negative or oversized base-256 size", ErrSparseMap)
		}
		var v int64
		for _, c := range b[1:] {
			if v > (1<<62)>>8 {
				return 0, fmt.Errorf("%w: size overflows", ErrSparseMap)
			}
			v = v<<8 | int64(c)
		}
		return v, nil
	}
	s := string(bytes.Trim(b, " \x00"))
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 8, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: size field %q", ErrSparseMap, s)
	}
	return v, nil
}

// parseSparse checks a GNU 1.0 sparse map (the text "N\n" then N
// "offset\nlength\n" pairs, NUL-padded) against the entry's real size and
// the data bytes that follow it: decimal numbers only, segments in order,
// not overlapping, inside realsize, lengths adding up to data, and at most
// maxSparseSegments of them. It makes no system call.
func parseSparse(blocks []byte, realsize, data int64) (*sparseEntry, error) {
	if realsize < 0 || realsize > MaxSparseSize {
		return nil, fmt.Errorf("%w: real size %d (limit %d)", ErrSparseMap, realsize, int64(MaxSparseSize))
	}
	if len(blocks)%512 != 0 {
		return nil, fmt.Errorf("%w: map of %d bytes is not whole blocks", ErrSparseMap, len(blocks))
	}
	rest := blocks
	next := func() (int64, error) {
		j := bytes.IndexByte(rest, '\n')
		if j <= 0 || j > 20 {
			return 0, fmt.Errorf("%w: map is not decimal numbers, one a line", ErrSparseMap)
		}
		tok := rest[:j]
		rest = rest[j+1:]
		for _, c := range tok {
			if c < '0' || c > '9' {
				return 0, fmt.Errorf("%w: %q is not a decimal number", ErrSparseMap, tok)
			}
		}
		v, err := strconv.ParseInt(string(tok), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: %q: %w", ErrSparseMap, tok, err)
		}
		return v, nil
	}
	n, err := next()
	if err != nil {
		return nil, err
	}
	if n > maxSparseSegments {
		return nil, fmt.Errorf("%w: %d segments (limit %d)", ErrSparseMap, n, maxSparseSegments)
	}
	sp := &sparseEntry{realsize: realsize, segs: make([]segment, 0, n)}
	var end int64
	for k := int64(0); k < n; k++ {
		off, err := next()
		if err != nil {
			return nil, err
		}
		l, err := next()
		if err != nil {
			return nil, err
		}
		switch {
		case off < end:
			return nil, fmt.Errorf("%w: segment at %d overlaps or precedes the one ending at %d", ErrSparseMap, off, end)
		case off > realsize || l > realsize-off:
			return nil, fmt.Errorf("%w: segment %d+%d beyond the real size %d", ErrSparseMap, off, l, realsize)
		}
		end = off + l
		sp.data += l
		sp.segs = append(sp.segs, segment{off, l})
	}
	if len(bytes.Trim(rest, "\x00")) != 0 {
		return nil, fmt.Errorf("%w: more than the %d segments it announces", ErrSparseMap, n)
	}
	if len(blocks)-len(rest) > 0 && len(rest) >= 512 {
		return nil, fmt.Errorf("%w: padding of whole blocks after the map", ErrSparseMap)
	}
	if sp.data != data {
		return nil, fmt.Errorf("%w: segments hold %d bytes, the entry %d", ErrSparseMap, sp.data, data)
	}
	return sp, nil
}
