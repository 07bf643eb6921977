// Package tarsplit rebuilds a layer's original tar stream from the
// tar-split metadata an engine kept when it unpacked the layer (Docker's
// layerdb tar-split.json.gz, containers-storage's
// overlay-layers/<id>.tar-split.gz) and the unpacked directory, the way
// both engines do when they export a layer.
//
// Non-goals: writing tar-split files; layers whose metadata is missing
// (callers re-tar the directory themselves).
package tarsplit

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/vbatts/tar-split/tar/asm"
	"github.com/vbatts/tar-split/tar/storage"

	"github.com/layercommit/layercommit/internal/verify"
)

// Open returns the tar that the gzipped tar-split file meta and the
// unpacked directory dir describe. File payloads are read inside dir
// (os.Root: no path of the metadata resolves outside it). The stream is
// produced by a goroutine and fails at EOF unless its sha256 is diffID;
// the caller closes it.
func Open(meta, dir string, diffID v1.Hash) (io.ReadCloser, error) {
	f, err := os.Open(meta)
	if err != nil {
		return nil, fmt.Errorf("opening tar-split %s: %w", meta, err)
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("reading tar-split %s: %w", meta, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		f.Close()
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		err := asm.WriteOutputTarStream(rootGetter{root}, storage.NewJSONUnpacker(zr), pw)
		root.Close()
		f.Close()
		if err != nil {
			err = fmt.Errorf("reassembling %s from tar-split: %w", dir, err)
		}
		pw.CloseWithError(err)
	}()
	return verify.Reader(pr, diffID, verify.UnknownSize), nil
}

// rootGetter serves tar-split file payloads from inside a directory.
type rootGetter struct{ root *os.Root }

func (g rootGetter) Get(name string) (io.ReadCloser, error) {
	f, err := g.root.Open(filepath.Clean("/" + name)[1:])
	if err != nil {
		return nil, err
	}
	return f, nil
}
