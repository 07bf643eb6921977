package layer

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/vbatts/tar-split/archive/tar"
	"github.com/vbatts/tar-split/tar/asm"
	"github.com/vbatts/tar-split/tar/storage"
)

// zstd:chunked, as containers/storage (pkg/chunked) reads it. Our own
// writer rather than containers/storage's pkg/chunked/compressor: that
// package pulls in some forty packages of containers/storage, among them
// pkg/unshare, whose cgo constructor would run at the start of every
// layercommit process. The format is small:
//
//	[frame: tar header(s)] [frame: payload of file 1] [frame: header] ...
//	[frame: end-of-archive blocks]
//	[skippable frame: zstd(TOC JSON)]
//	[skippable frame: zstd(tar-split JSON)]
//	[skippable frame: 64-byte footer]
//
// Every frame is an ordinary zstd frame and skippable frames are skipped
// by every zstd decoder, so the blob decompresses to our tar byte for
// byte: the diffID is the tar's. The annotations (below) locate the TOC
// and the tar-split; the TOC's digest is what a partial puller trusts.
//
// The frame sequence, the TOC fields and the annotations are those of
// containers/storage's compressor (TestZstdChunkedMatchesContainersStorage
// compares bytes), with two deliberate differences: a file's payload is
// one chunk (we do not split files at rolling-checksum boundaries nor
// mark runs of zeros; the format makes chunks optional), and TOC times
// are written in UTC (containers/storage writes the local zone, so its
// bytes depend on TZ).
//
// The TOC and the compressed tar-split are held in memory until the end:
// they grow with the number of entries (about 200 bytes an entry), never
// with file sizes.

// The zstd:chunked annotations (containers/storage pkg/chunked/internal/
// minimal; read by podman since 4.x's containers/storage 1.4x).
const (
	// ZstdChunkedManifestChecksum is the digest of the compressed TOC.
	ZstdChunkedManifestChecksum = "io.github.containers.zstd-chunked.manifest-checksum"
	// ZstdChunkedManifestPosition is offset:length:uncompressed-length:type
	// of the compressed TOC (type 1: CRFS-style JSON).
	ZstdChunkedManifestPosition = "io.github.containers.zstd-chunked.manifest-position"
	// ZstdChunkedTarSplitPosition is offset:length:uncompressed-length of
	// the compressed tar-split.
	ZstdChunkedTarSplitPosition = "io.github.containers.zstd-chunked.tarsplit-position"
)

const (
	zstdChunkedManifestTypeCRFS = 1
	zstdSkippableFrameHeader    = 8 // magic + 32-bit length
	zstdChunkedFooterSize       = 64
)

var (
	zstdSkippableMagic    = []byte{0x50, 0x2a, 0x4d, 0x18}
	zstdChunkedFrameMagic = []byte("GNUlInUx")
)

// zstdChunkedTOC is the TOC (containers/storage calls it the manifest).
type zstdChunkedTOC struct {
	Version        int                `json:"version"`
	Entries        []zstdChunkedEntry `json:"entries"`
	TarSplitDigest string             `json:"tarSplitDigest,omitempty"`
}

// zstdChunkedEntry is one tar entry in the TOC; the field order and
// names are the format's.
type zstdChunkedEntry struct {
	Type       string            `json:"type"`
	Name       string            `json:"name"`
	Linkname   string            `json:"linkName,omitempty"`
	Mode       int64             `json:"mode,omitempty"`
	Size       int64             `json:"size,omitempty"`
	UID        int               `json:"uid,omitempty"`
	GID        int               `json:"gid,omitempty"`
	ModTime    *time.Time        `json:"modtime,omitempty"`
	AccessTime *time.Time        `json:"accesstime,omitempty"`
	ChangeTime *time.Time        `json:"changetime,omitempty"`
	Devmajor   int64             `json:"devMajor,omitempty"`
	Devminor   int64             `json:"devMinor,omitempty"`
	Xattrs     map[string]string `json:"xattrs,omitempty"`
	Digest     string            `json:"digest,omitempty"`
	Offset     int64             `json:"offset,omitempty"`
	EndOffset  int64             `json:"endOffset,omitempty"`
}

var zstdChunkedTypes = map[byte]string{
	tar.TypeReg:     "reg",
	tar.TypeLink:    "hardlink",
	tar.TypeChar:    "char",
	tar.TypeBlock:   "block",
	tar.TypeDir:     "dir",
	tar.TypeFifo:    "fifo",
	tar.TypeSymlink: "symlink",
}

// zstdChunkedWriter feeds our tar to writeZstdChunked on a goroutine.
type zstdChunkedWriter struct {
	*pipeCompressor
	annotations map[string]string
}

func newZstdChunkedWriter(dst io.Writer, level int) *zstdChunkedWriter {
	z := &zstdChunkedWriter{annotations: map[string]string{}}
	z.pipeCompressor = startPipe(func(r io.Reader) error {
		if err := writeZstdChunked(dst, r, level, z.annotations); err != nil {
			return fmt.Errorf("writing zstd:chunked stream: %w", err)
		}
		return nil
	})
	return z
}

func (z *zstdChunkedWriter) seal() sealed { return sealed{annotations: z.annotations} }

// newZstdChunkedEncoder is the one place the zstd:chunked encoder is set
// up: the level as containers/storage sets it, every other setting that
// shapes the bytes the library's default. Each frame is ended by Close
// and a new one begun by Reset; no Flush.
//
// Two settings bound memory without changing a byte (the goldens and
// TestZstdChunkedMatchesContainersStorage hold them to it): one
// goroutine (containers/storage takes GOMAXPROCS; without concurrent
// blocks the count does not shape the stream), and, for the metadata
// encoders (TOC, tar-split: a few MB at most), the library's low-memory
// history (window + one block instead of two windows: 8 MiB less each
// at level 3, at the cost of more copying, which only the payload
// encoder would feel).
func newZstdChunkedEncoder(w io.Writer, level int, metadata bool) (*zstd.Encoder, error) {
	return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
		zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(metadata))
}

// writeZstdChunked compresses the tar r into dst and sets annotations.
func writeZstdChunked(dst io.Writer, r io.Reader, level int, annotations map[string]string) (err error) {
	out := &countingWriter{w: dst}

	// The tar-split (headers and padding, payloads by CRC only), made by
	// the tar-split library as it reads the tar.
	var tsData bytes.Buffer
	tsHash := sha256.New()
	tsEnc, err := newZstdChunkedEncoder(io.MultiWriter(&tsData, tsHash), level, true)
	if err != nil {
		return err
	}
	defer tsEnc.Close()
	tsRaw := &countingWriter{w: tsEnc}
	its, done, err := asm.NewInputTarStreamWithDone(r, storage.NewJSONPacker(tsRaw), nil)
	if err != nil {
		return fmt.Errorf("starting tar-split: %w", err)
	}
	entries, err := writeZstdChunkedFrames(out, its, level)
	its.Close()
	if derr := <-done; err == nil && derr != nil {
		err = fmt.Errorf("making tar-split: %w", derr)
	}
	if err != nil {
		return err
	}
	if err := tsEnc.Close(); err != nil {
		return fmt.Errorf("compressing tar-split: %w", err)
	}

	toc, err := json.Marshal(zstdChunkedTOC{Version: 1, Entries: entries,
		TarSplitDigest: "sha256:" + hex.EncodeToString(tsHash.Sum(nil))})
	if err != nil {
		return fmt.Errorf("encoding TOC: %w", err)
	}
	var ztoc bytes.Buffer
	enc, err := newZstdChunkedEncoder(&ztoc, level, true)
	if err != nil {
		return err
	}
	if _, err := enc.Write(toc); err != nil {
		return fmt.Errorf("compressing TOC: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("compressing TOC: %w", err)
	}
	tocOff := uint64(out.n) + zstdSkippableFrameHeader
	tsOff := tocOff + uint64(ztoc.Len()) + zstdSkippableFrameHeader
	tocSum := sha256.Sum256(ztoc.Bytes())
	annotations[ZstdChunkedManifestChecksum] = "sha256:" + hex.EncodeToString(tocSum[:])
	annotations[ZstdChunkedManifestPosition] = fmt.Sprintf("%d:%d:%d:%d", tocOff, ztoc.Len(), len(toc), zstdChunkedManifestTypeCRFS)
	annotations[ZstdChunkedTarSplitPosition] = fmt.Sprintf("%d:%d:%d", tsOff, tsData.Len(), tsRaw.n)

	footer := make([]byte, zstdChunkedFooterSize)
	for i, v := range []uint64{tocOff, uint64(ztoc.Len()), uint64(len(toc)), zstdChunkedManifestTypeCRFS,
		tsOff, uint64(tsData.Len()), uint64(tsRaw.n)} {
		binary.LittleEndian.PutUint64(footer[8*i:], v)
	}
	copy(footer[56:], zstdChunkedFrameMagic)
	for _, b := range [][]byte{ztoc.Bytes(), tsData.Bytes(), footer} {
		if err := writeSkippableFrame(out, b); err != nil {
			return fmt.Errorf("writing zstd:chunked metadata: %w", err)
		}
	}
	return nil
}

// writeZstdChunkedFrames writes the tar's frames: headers share a frame,
// each non-empty payload has its own. It returns the TOC entries.
func writeZstdChunkedFrames(out *countingWriter, its io.Reader, level int) ([]zstdChunkedEntry, error) {
	enc, err := newZstdChunkedEncoder(out, level, false)
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	// restart ends the current frame and returns where the next begins.
	restart := func() (int64, error) {
		if err := enc.Close(); err != nil {
			return 0, err
		}
		enc.Reset(out)
		return out.n, nil
	}
	tr := tar.NewReader(its)
	tr.RawAccounting = true
	buf := make([]byte, 32<<10)
	var entries []zstdChunkedEntry
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading tar: %w", err)
		}
		if _, err := enc.Write(tr.RawBytes()); err != nil {
			return nil, err
		}
		e, err := zstdChunkedEntryOf(hdr)
		if err != nil {
			return nil, err
		}
		var sum hash.Hash
		for {
			n, rerr := tr.Read(buf)
			if n > 0 {
				if sum == nil {
					if e.Offset, err = restart(); err != nil {
						return nil, err
					}
					sum = sha256.New()
				}
				sum.Write(buf[:n])
				if _, err := enc.Write(buf[:n]); err != nil {
					return nil, err
				}
			}
			if errors.Is(rerr, io.EOF) {
				break
			}
			if rerr != nil {
				return nil, fmt.Errorf("reading %s: %w", hdr.Name, rerr)
			}
		}
		if sum != nil {
			if e.EndOffset, err = restart(); err != nil {
				return nil, err
			}
			e.Digest = "sha256:" + hex.EncodeToString(sum.Sum(nil))
		}
		entries = append(entries, e)
	}
	// The end-of-archive blocks and anything after them, so that the
	// stream decompresses to the whole tar.
	if _, err := enc.Write(tr.RawBytes()); err != nil {
		return nil, err
	}
	if _, err := io.Copy(enc, its); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return entries, nil
}

// zstdChunkedEntryOf is the TOC entry of hdr, without payload fields.
func zstdChunkedEntryOf(hdr *tar.Header) (zstdChunkedEntry, error) {
	typ, ok := zstdChunkedTypes[hdr.Typeflag]
	if !ok {
		return zstdChunkedEntry{}, fmt.Errorf("%s: tar entry type %q has no zstd:chunked type", hdr.Name, hdr.Typeflag)
	}
	var xattrs map[string]string
	for k, v := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if xattrs == nil {
				xattrs = map[string]string{}
			}
			xattrs[name] = base64.StdEncoding.EncodeToString([]byte(v))
		}
	}
	return zstdChunkedEntry{
		Type: typ, Name: hdr.Name, Linkname: hdr.Linkname, Mode: hdr.Mode, Size: hdr.Size,
		UID: hdr.Uid, GID: hdr.Gid,
		ModTime: utcTime(hdr.ModTime), AccessTime: utcTime(hdr.AccessTime), ChangeTime: utcTime(hdr.ChangeTime),
		Devmajor: hdr.Devmajor, Devminor: hdr.Devminor, Xattrs: xattrs,
	}, nil
}

// utcTime is t in UTC, or nil if zero.
func utcTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// writeSkippableFrame writes b as a zstd skippable frame.
func writeSkippableFrame(w io.Writer, b []byte) error {
	var h [zstdSkippableFrameHeader]byte
	copy(h[:], zstdSkippableMagic)
	binary.LittleEndian.PutUint32(h[4:], uint32(len(b)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}
