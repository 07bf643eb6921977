package diff

import (
	"archive/tar"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// dataSegments lists the data extents of the open file fd, size bytes
// long, with SEEK_DATA and SEEK_HOLE, and says whether it has any hole. A
// file system without them reports one extent, the whole file.
func dataSegments(fd int, size int64) ([]segment, bool, error) {
	var segs []segment
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			break // only a hole from off to the end
		}
		if err != nil {
			return nil, false, fmt.Errorf("seeking data: %w", err)
		}
		if start >= size {
			break
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return nil, false, fmt.Errorf("seeking a hole: %w", err)
		}
		end = min(end, size)
		segs = append(segs, segment{start, end - start})
		off = end
	}
	dense := len(segs) == 1 && segs[0] == segment{0, size}
	return segs, !dense, nil
}

// writeSparse writes the regular file of h (at p, inode ino) as a sparse
// entry if it has holes, and reports whether it did; a file without holes
// is left to the ordinary path. The tar writer is flushed first, and its
// stream is written past it: tw must have no entry open.
func writeSparse(tw *tar.Writer, out *hashingPipe, h *tar.Header, p string, ino uint64) (done bool, err error) {
	fd, err := ignoringEINTR(func() (int, error) {
		return unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	})
	if err == unix.ELOOP {
		return false, fmt.Errorf("%w: %s is now a symlink", ErrFileChanged, p)
	}
	if err != nil {
		return false, &os.PathError{Op: "open", Path: p, Err: err}
	}
	defer func() {
		if cerr := unix.Close(fd); cerr != nil && err == nil {
			err = &os.PathError{Op: "close", Path: p, Err: cerr}
		}
	}()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, &os.PathError{Op: "fstat", Path: p, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || (ino != 0 && st.Ino != ino) {
		return false, fmt.Errorf("%w: %s is no longer the regular file the walk saw", ErrFileChanged, p)
	}
	if st.Size != h.Size {
		return false, fmt.Errorf("%w: %d bytes, the walk saw %d", ErrSizeChanged, st.Size, h.Size)
	}
	segs, holes, err := dataSegments(fd, h.Size)
	if err != nil || !holes {
		return false, err
	}
	segs = mergeSegments(segs, maxSparseSegments)
	if n := len(segs); n == 0 || segs[n-1].off+segs[n-1].len < h.Size {
		segs = append(segs, segment{h.Size, 0})
	}
	m := sparseMap(segs)
	physical := int64(len(m))
	for _, s := range segs {
		physical += s.len
	}
	hb, err := sparseHeaders(h, physical)
	if err != nil {
		return false, err
	}
	if err := tw.Flush(); err != nil {
		return false, err
	}
	for _, b := range [][]byte{hb, m} {
		if _, err := out.Write(b); err != nil {
			return false, err
		}
	}
	for _, s := range segs {
		if err := copySegment(out, fd, p, s); err != nil {
			return false, err
		}
	}
	if _, err := out.Write(make([]byte, padding(physical))); err != nil {
		return false, err
	}
	return true, nil
}

// copySegment writes the bytes of s from fd, read into out's own buffers.
// A file that ends inside s is ErrSizeChanged.
func copySegment(out *hashingPipe, fd int, p string, s segment) error {
	for off, end := s.off, s.off+s.len; off < end; {
		buf, err := out.space()
		if err != nil {
			return err
		}
		buf = buf[:min(int64(len(buf)), end-off)]
		m, err := ignoringEINTR(func() (int, error) { return unix.Pread(fd, buf, off) })
		if err != nil {
			return &os.PathError{Op: "pread", Path: p, Err: err}
		}
		if m == 0 {
			return fmt.Errorf("%w: ends at %d, inside data at %d-%d", ErrSizeChanged, off, s.off, end)
		}
		if _, err := out.Write(buf[:m]); err != nil {
			return err
		}
		off += int64(m)
	}
	return nil
}
