package containersstorage

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/internal/atomicfile"
)

// Destination writes images into the store as containers/storage 1.43
// does, so that podman lists and runs them: a layer the store lacks is
// unpacked into overlay/<id>/diff (overlay form) with its link, lower
// chain, work and merged dirs, its tar-split beside layers.json and a
// record in it; the image gets its big-data files (config, manifest) and
// a record in images.json. Layers already in the store (same diff digest
// on the same parent) are reused. It is an export.Destination.
//
// After each record file it writes a new last-writer token into the lock
// file beside it, as containers/storage does, so that a podman process
// that keeps the records in memory reloads them.
//
// Not done: names-history, uidset/gidset of new layers (informational;
// podman derives nothing from them without user namespaces).
type Destination struct {
	s       *Store
	name    string
	blobDir string
}

// NormalizeName is the name podman commit gives NAME[:TAG]: a name
// without a registry host goes under localhost/, a missing tag is
// latest.
func NormalizeName(ref string) (string, error) {
	if ref == "" || strings.ContainsAny(ref, " \t\n@") || ref != strings.ToLower(ref) {
		return "", fmt.Errorf("bad image name %q (want lower-case NAME[:TAG])", ref)
	}
	first, _, hasSlash := strings.Cut(ref, "/")
	if !hasSlash || (!strings.ContainsAny(first, ".:") && first != "localhost") {
		ref = "localhost/" + ref
	}
	if i := strings.LastIndex(ref, ":"); i < strings.LastIndex(ref, "/") || i < 0 {
		ref += ":latest"
	}
	return ref, nil
}

// Destination returns a destination that writes one image named ref
// (NAME[:TAG], NormalizeName) into the store. Close removes its temp
// space.
func (s *Store) Destination(ref string) (*Destination, error) {
	name, err := NormalizeName(ref)
	if err != nil {
		return nil, err
	}
	tmp := filepath.Join(s.Root, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(tmp, "layercommit-")
	if err != nil {
		return nil, err
	}
	return &Destination{s: s, name: name, blobDir: dir}, nil
}

// BlobDir is temp space in the store's tmp dir.
func (d *Destination) BlobDir() string { return d.blobDir }

// PrefersOCI: podman commits OCI images by default.
func (d *Destination) PrefersOCI() bool { return true }

// Close removes the temp space; it is safe to call more than once.
func (d *Destination) Close() error { return os.RemoveAll(d.blobDir) }

// layerRecord is a layers.json record as far as Write reads it; the
// records are rewritten from their raw JSON, so fields it does not know
// are kept.
type layerRecord struct {
	ID         string `json:"id"`
	Parent     string `json:"parent,omitempty"`
	DiffDigest string `json:"diff-digest,omitempty"`
}

// Write stores img: its missing layers, bottom first, then the image,
// under the exclusive locks of the layer and image stores (taken in that
// order, as containers/storage does, each waited for up to the store's
// lock timeout). Each layer dir is built under a temp name and renamed;
// every record file is replaced by temp file, fsync and rename, layers
// first, so a crash leaves at most an unreferenced layer; an error
// removes the layers this call made and puts layers.json back. The name
// moves from any image that had it, as podman's tagging does.
func (d *Destination) Write(ctx context.Context, img v1.Image) error {
	s := d.s
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	rawMan, err := img.RawManifest()
	if err != nil {
		return err
	}
	manDigest, err := img.Digest()
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	if len(layers) != len(cf.RootFS.DiffIDs) {
		return fmt.Errorf("image has %d layers, its config lists %d", len(layers), len(cf.RootFS.DiffIDs))
	}

	unlockL, err := writeLock(filepath.Join(s.Root, "overlay-layers/layers.lock"), s.timeout())
	if err != nil {
		return err
	}
	defer unlockL()
	unlockI, err := writeLock(filepath.Join(s.Root, "overlay-images/images.lock"), s.timeout())
	if err != nil {
		return err
	}
	defer unlockI()

	layersFile := filepath.Join(s.Root, "overlay-layers/layers.json")
	b, err := readLimited(layersFile)
	if err != nil {
		return err
	}
	var rawLayers []json.RawMessage
	if err := json.Unmarshal(b, &rawLayers); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrLayout, layersFile, err)
	}
	recs := make([]layerRecord, len(rawLayers))
	for i, r := range rawLayers {
		if err := json.Unmarshal(r, &recs[i]); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrLayout, layersFile, err)
		}
	}
	// On error every layer this write made is removed again and
	// layers.json, if already replaced, gets its old bytes back.
	var made []string
	written := false
	fail := func(err error) error {
		if written {
			if rerr := atomicfile.WriteFile(layersFile, b, 0o600); rerr == nil {
				touchLock(filepath.Join(s.Root, "overlay-layers/layers.lock"))
			}
		}
		for _, id := range made {
			s.removeLayer(id)
		}
		return err
	}
	parent := ""
	for i, l := range layers {
		diffID := cf.RootFS.DiffIDs[i]
		found := ""
		for _, r := range recs {
			if r.DiffDigest == diffID.String() && r.Parent == parent {
				found = r.ID
				break
			}
		}
		if found == "" {
			rec, raw, err := d.writeLayer(ctx, l, diffID, parent)
			if err != nil {
				return fail(fmt.Errorf("writing layer %s into %s: %w", diffID, s.Root, err))
			}
			recs, rawLayers, made = append(recs, rec), append(rawLayers, raw), append(made, rec.ID)
			found = rec.ID
		}
		parent = found
	}
	if len(made) > 0 {
		out, err := json.Marshal(rawLayers)
		if err != nil {
			return fail(err)
		}
		if err := atomicfile.WriteFile(layersFile, out, 0o600); err != nil {
			return fail(fmt.Errorf("writing %s: %w", layersFile, err))
		}
		written = true
		if err := touchLock(filepath.Join(s.Root, "overlay-layers/layers.lock")); err != nil {
			return fail(err)
		}
	}
	if err := d.writeImage(cfgName, rawCfg, manDigest, rawMan, parent); err != nil {
		return fail(err)
	}
	return nil
}

// removeLayer removes what writeLayer made of layer id: its l/ link, its
// overlay dir and its tar-split.
func (s *Store) removeLayer(id string) {
	ov := filepath.Join(s.Root, "overlay")
	if link, err := os.ReadFile(filepath.Join(ov, id, "link")); err == nil && len(link) > 0 {
		os.Remove(filepath.Join(ov, "l", strings.TrimSpace(string(link))))
	}
	os.RemoveAll(filepath.Join(ov, id))
	os.Remove(filepath.Join(s.Root, "overlay-layers", id+".tar-split.gz"))
}

// writeLayer unpacks l as a new layer on parent: overlay/<id> built as
// overlay/.layercommit-<id> and renamed, then its l/ link; it returns the
// layers.json record (uncompressed, as podman commit records its
// layers).
func (d *Destination) writeLayer(ctx context.Context, l v1.Layer, diffID v1.Hash, parent string) (layerRecord, json.RawMessage, error) {
	s := d.s
	id, link := randomHex(32), randomLink()
	ov := filepath.Join(s.Root, "overlay")
	if err := os.MkdirAll(filepath.Join(ov, "l"), 0o700); err != nil {
		return layerRecord{}, nil, err
	}
	tmp := filepath.Join(ov, ".layercommit-"+id)
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return layerRecord{}, nil, err
	}
	defer os.RemoveAll(tmp)
	for _, sub := range []string{"diff", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(tmp, sub), 0o700); err != nil {
			return layerRecord{}, nil, err
		}
	}
	if err := os.Chmod(filepath.Join(tmp, "diff"), 0o755); err != nil {
		return layerRecord{}, nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(tmp, "link"), []byte(link), 0o644); err != nil {
		return layerRecord{}, nil, err
	}
	if parent != "" {
		pl, err := os.ReadFile(filepath.Join(ov, parent, "link"))
		if err != nil {
			return layerRecord{}, nil, fmt.Errorf("reading link of parent layer %s: %w", parent, err)
		}
		lower := "l/" + strings.TrimSpace(string(pl))
		if pLower, err := os.ReadFile(filepath.Join(ov, parent, "lower")); err == nil && len(pLower) > 0 {
			lower += ":" + strings.TrimSpace(string(pLower))
		}
		if err := atomicfile.WriteFile(filepath.Join(tmp, "lower"), []byte(lower), 0o644); err != nil {
			return layerRecord{}, nil, err
		}
	}
	rc, err := l.Uncompressed()
	if err != nil {
		return layerRecord{}, nil, err
	}
	defer rc.Close()
	meta := filepath.Join(s.Root, "overlay-layers", id+".tar-split.gz")
	size, err := unpackLayer(ctx, rc, filepath.Join(tmp, "diff"), meta, diffID)
	if err != nil {
		os.Remove(meta)
		return layerRecord{}, nil, err
	}
	final := filepath.Join(ov, id)
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(meta)
		return layerRecord{}, nil, err
	}
	if err := os.Symlink(filepath.Join("..", id, "diff"), filepath.Join(ov, "l", link)); err != nil {
		return layerRecord{}, nil, err
	}
	if err := atomicfile.SyncDir(ov); err != nil {
		return layerRecord{}, nil, err
	}
	rec := layerRecord{ID: id, Parent: parent, DiffDigest: diffID.String()}
	raw, err := json.Marshal(struct {
		ID               string    `json:"id"`
		Parent           string    `json:"parent,omitempty"`
		Created          time.Time `json:"created"`
		CompressedDigest string    `json:"compressed-diff-digest"`
		CompressedSize   int64     `json:"compressed-size"`
		DiffDigest       string    `json:"diff-digest"`
		DiffSize         int64     `json:"diff-size"`
	}{id, parent, time.Now().UTC(), diffID.String(), size, diffID.String(), size})
	return rec, raw, err
}

// writeImage writes the image's big-data files and its images.json
// record, or adds the name to the image when the store has it already.
func (d *Destination) writeImage(id v1.Hash, rawCfg []byte, man v1.Hash, rawMan []byte, top string) error {
	s := d.s
	imagesFile := filepath.Join(s.Root, "overlay-images/images.json")
	b, err := readLimited(imagesFile)
	if err != nil {
		return err
	}
	var recs []map[string]json.RawMessage
	if err := json.Unmarshal(b, &recs); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrLayout, imagesFile, err)
	}
	exists := false
	// newDir is the big-data dir this call made, removed on error.
	var newDir string
	defer func() {
		if newDir != "" {
			os.RemoveAll(newDir)
		}
	}()
	for _, r := range recs {
		var rid string
		var names []string
		json.Unmarshal(r["id"], &rid)
		json.Unmarshal(r["names"], &names)
		var kept []string
		for _, n := range names {
			if n != d.name {
				kept = append(kept, n)
			}
		}
		if rid == id.Hex {
			exists = true
			kept = append(kept, d.name)
		}
		if len(kept) != len(names) || rid == id.Hex {
			nb, _ := json.Marshal(kept)
			if len(kept) == 0 {
				delete(r, "names")
			} else {
				r["names"] = nb
			}
		}
	}
	if !exists {
		dir := filepath.Join(s.Root, "overlay-images", id.Hex)
		if _, err := os.Stat(dir); err == nil {
			return fmt.Errorf("%w: %s exists but images.json has no image %s", ErrCorrupt, dir, id.Hex)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		newDir = dir
		big := []struct {
			key string
			b   []byte
		}{{id.String(), rawCfg}, {"manifest-" + man.String(), rawMan}, {"manifest", rawMan}}
		names := []string{}
		sizes, digests := map[string]int64{}, map[string]string{}
		for _, it := range big {
			if err := atomicfile.WriteFile(s.bigDataPath(id.Hex, it.key), it.b, 0o600); err != nil {
				return err
			}
			names = append(names, it.key)
			sizes[it.key] = int64(len(it.b))
			digests[it.key] = man.String()
		}
		digests[id.String()] = id.String()
		rec := map[string]any{
			"id": id.Hex, "digest": man.String(), "names": []string{d.name}, "layer": top,
			"metadata": "{}", "big-data-names": names, "big-data-sizes": sizes, "big-data-digests": digests,
			"created": time.Now().UTC(),
		}
		raw, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		var m map[string]json.RawMessage
		json.Unmarshal(raw, &m)
		recs = append(recs, m)
	}
	out, err := json.Marshal(recs)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(imagesFile, out, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", imagesFile, err)
	}
	newDir = ""
	return touchLock(filepath.Join(s.Root, "overlay-images/images.lock"))
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// randomLink is a short link name as the overlay driver makes them: 26
// base32 characters.
func randomLink() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base32.StdEncoding.EncodeToString(b)[:26]
}
