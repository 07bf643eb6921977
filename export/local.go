package export

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/distribution/reference"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/layercommit/layercommit/internal/cleanup"
	"github.com/layercommit/layercommit/internal/flock"
	"github.com/layercommit/layercommit/statedir"
)

func init() { register(local{}) }

// ErrNotInStore is returned when the local store holds no image of a
// name or ID.
var ErrNotInStore = errors.New("no such image in the local store")

// local is the embedded image store: local:NAME[:TAG] or local:ID. It is
// an OCI image layout under the state dir (statedir.ImagesDir), written
// by the oci: writer (same blob checks, locks, atomic index and gc); only
// the index rule differs:
//
//   - each name is one index entry whose ref.name annotation is the name
//     normalised as docker does ("app" is docker.io/library/app:latest);
//   - an image without a name (a build with no -t) is an entry with no
//     annotation, as docker keeps a "<none>" image; an image losing its
//     last name to another image stays so, as docker's dangling images.
//
// As a destination, "local:" (no name) stores the image untagged.
type local struct{}

func (local) Name() string { return "local" }

// Store is the embedded image store of a state dir.
type Store struct{ dir string }

// OpenStore returns the store of the state dir at stateDir; nothing is
// made until an image is written.
func OpenStore(stateDir string) *Store {
	if stateDir == "" {
		stateDir = statedir.Default
	}
	return &Store{dir: statedir.ImagesDir(stateDir)}
}

// Dir is the store's OCI layout dir.
func (s *Store) Dir() string { return s.dir }

func storeOf(o *Options) *Store { return OpenStore(o.StateDir) }

// NormalizeName returns a plain image name as docker normalises it
// (reference.ParseNormalizedNamed, then the "latest" tag when there is
// none): "app" is "docker.io/library/app:latest". Digests are refused: a
// store name is a tag.
func NormalizeName(s string) (string, error) {
	n, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return "", fmt.Errorf("bad image name %q: %w", s, err)
	}
	if _, ok := n.(reference.Digested); ok {
		return "", fmt.Errorf("bad image name %q: a name to store takes a tag, not a digest", s)
	}
	return reference.TagNameOnly(n).String(), nil
}

// FamiliarName is a normalised name as docker shows it ("app:latest").
func FamiliarName(full string) string {
	n, err := reference.ParseNormalizedNamed(full)
	if err != nil {
		return full
	}
	return reference.FamiliarString(n)
}

func (local) Open(_ context.Context, rest string, o *Options) (v1.Image, error) {
	if rest == "" {
		return nil, errors.New("local: wants NAME[:TAG] or an image ID, as in local:app:1")
	}
	s := storeOf(o)
	desc, err := s.Lookup(rest)
	if err != nil {
		return nil, err
	}
	img, err := layout.Path(s.dir).Image(desc.Digest)
	if err != nil {
		return nil, err
	}
	return check(img)
}

func (local) Destination(_ context.Context, rest string, o *Options) (Destination, error) {
	name := ""
	if rest != "" {
		var err error
		if name, err = NormalizeName(rest); err != nil {
			return nil, err
		}
	}
	d, err := newOCIDest(storeOf(o).dir, func(im *v1.IndexManifest, desc v1.Descriptor) { placeName(im, desc, name) })
	if err != nil {
		return nil, err
	}
	// The store stays, even empty: it is not this write's to remove.
	d.fresh = false
	return d, nil
}

// placeName points name at desc (or, for "", makes sure desc has an
// entry), keeping an image that loses its last name as an untagged entry.
func placeName(im *v1.IndexManifest, desc v1.Descriptor, name string) {
	if name == "" {
		for _, m := range im.Manifests {
			if m.Digest == desc.Digest {
				return
			}
		}
		im.Manifests = append(im.Manifests, desc)
		return
	}
	var displaced []v1.Descriptor
	kept := im.Manifests[:0]
	for _, m := range im.Manifests {
		switch n := m.Annotations[refNameAnnotation]; {
		case n == name:
			displaced = append(displaced, m)
		case n == "" && m.Digest == desc.Digest:
			// Named now: no longer untagged.
		default:
			kept = append(kept, m)
		}
	}
	desc.Annotations = map[string]string{refNameAnnotation: name}
	im.Manifests = append(kept, desc)
	for _, m := range displaced {
		m.Annotations = nil
		placeName(im, m, "")
	}
}

// idPattern is an image ID: sha256:<64 hex>, or at least 12 hex digits
// of one (docker's short IDs).
var idPattern = regexp.MustCompile(`^(sha256:)?[0-9a-f]{12,64}$`)

// entry is an index entry (at index i) with its image's config digest.
type entry struct {
	i    int
	desc v1.Descriptor
	id   v1.Hash
}

// entries reads the index and each manifest's config digest.
func (s *Store) entries(im *v1.IndexManifest) ([]entry, error) {
	p := layout.Path(s.dir)
	var out []entry
	for i, d := range im.Manifests {
		img, err := p.Image(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("reading image %s of the local store: %w", d.Digest, err)
		}
		id, err := img.ConfigName()
		if err != nil {
			return nil, fmt.Errorf("reading image %s of the local store: %w", d.Digest, err)
		}
		out = append(out, entry{i, d, id})
	}
	return out, nil
}

// match finds the entries ref names: a name (normalised) or an image ID
// (in full or a unique prefix of 12 hex digits or more). A name is tried
// first, as docker does.
func match(es []entry, ref string) (byName bool, found []entry, err error) {
	if name, err := NormalizeName(ref); err == nil {
		for _, e := range es {
			if e.desc.Annotations[refNameAnnotation] == name {
				return true, []entry{e}, nil
			}
		}
	}
	if !idPattern.MatchString(ref) {
		if _, err := NormalizeName(ref); err != nil {
			return false, nil, err
		}
		return false, nil, fmt.Errorf("%s: %w", ref, ErrNotInStore)
	}
	prefix := strings.TrimPrefix(ref, "sha256:")
	ids := map[v1.Hash]bool{}
	for _, e := range es {
		if strings.HasPrefix(e.id.Hex, prefix) {
			found = append(found, e)
			ids[e.id] = true
		}
	}
	switch {
	case len(ids) == 0:
		return false, nil, fmt.Errorf("%s: %w", ref, ErrNotInStore)
	case len(ids) > 1:
		return false, nil, fmt.Errorf("image ID prefix %s is ambiguous in the local store", ref)
	}
	return false, found, nil
}

// Lookup returns the manifest descriptor of the image ref names (a name
// or an ID, as match); ErrNotInStore when there is none.
func (s *Store) Lookup(ref string) (v1.Descriptor, error) {
	im, err := readIndex(s.dir)
	if err != nil {
		return v1.Descriptor{}, err
	}
	es, err := s.entries(im)
	if err != nil {
		return v1.Descriptor{}, err
	}
	_, found, err := match(es, ref)
	if err != nil {
		return v1.Descriptor{}, err
	}
	d := found[0].desc
	d.Annotations = nil
	return d, nil
}

// StoreImage is one image of the store as `layercommit images` lists it.
type StoreImage struct {
	// ID is the image ID (the config digest); Digest the manifest's.
	ID     v1.Hash `json:"Id"`
	Digest v1.Hash `json:"Digest"`
	// Names are the normalised names, sorted; none for an untagged image.
	Names   []string  `json:"Names"`
	Created time.Time `json:"Created"`
	// Size is the bytes the image takes in the store: its manifest,
	// config and compressed layers (shared layers counted in each image).
	Size int64 `json:"Size"`
}

// Images lists the store's images, newest first (an absent store is
// empty).
func (s *Store) Images() ([]StoreImage, error) {
	im, err := readIndex(s.dir)
	if err != nil {
		return nil, err
	}
	es, err := s.entries(im)
	if err != nil {
		return nil, err
	}
	byDigest := map[v1.Hash]*StoreImage{}
	var out []*StoreImage
	for _, e := range es {
		si := byDigest[e.desc.Digest]
		if si == nil {
			img, err := layout.Path(s.dir).Image(e.desc.Digest)
			if err != nil {
				return nil, err
			}
			m, err := img.Manifest()
			if err != nil {
				return nil, err
			}
			cf, err := img.ConfigFile()
			if err != nil {
				return nil, err
			}
			si = &StoreImage{ID: e.id, Digest: e.desc.Digest, Names: []string{}, Created: cf.Created.UTC(), Size: e.desc.Size + m.Config.Size}
			for _, l := range m.Layers {
				si.Size += l.Size
			}
			byDigest[e.desc.Digest] = si
			out = append(out, si)
		}
		if n := e.desc.Annotations[refNameAnnotation]; n != "" {
			si.Names = append(si.Names, n)
		}
	}
	res := make([]StoreImage, len(out))
	for i, si := range out {
		sort.Strings(si.Names)
		res[i] = *si
	}
	sort.SliceStable(res, func(i, j int) bool { return res[i].Created.After(res[j].Created) })
	return res, nil
}

// Tag gives the image src names (a name or an ID) the name name as well.
func (s *Store) Tag(src, name string) error {
	full, err := NormalizeName(name)
	if err != nil {
		return err
	}
	return updateIndex(s.dir, func(im *v1.IndexManifest) error {
		es, err := s.entries(im)
		if err != nil {
			return err
		}
		_, found, err := match(es, src)
		if err != nil {
			return err
		}
		d := found[0].desc
		d.Annotations = nil
		placeName(im, d, full)
		return nil
	})
}

// Remove removes each ref from the store, as docker rmi does: a name is
// untagged, and its image deleted when that was its last entry; an ID
// deletes the image with all its names. Every ref is checked before the
// index changes: an unknown one changes nothing. The blobs no image
// names any more are then removed, unless a writer is using the store
// (then `layercommit gc --state-dir` removes them later). It returns
// docker's report lines ("Untagged: NAME", "Deleted: ID").
func (s *Store) Remove(refs ...string) ([]string, error) {
	if _, err := os.Stat(filepath.Join(s.dir, "oci-layout")); err != nil {
		return nil, fmt.Errorf("%s: %w", strings.Join(refs, ", "), ErrNotInStore)
	}
	var report []string
	err := updateIndex(s.dir, func(im *v1.IndexManifest) error {
		for _, ref := range refs {
			es, err := s.entries(im)
			if err != nil {
				return err
			}
			_, found, err := match(es, ref)
			if err != nil {
				return err
			}
			// A name drops its entry; an ID every entry of its image.
			drop := map[int]bool{}
			for _, e := range found {
				drop[e.i] = true
			}
			kept := im.Manifests[:0]
			left := false
			for i, m := range im.Manifests {
				switch {
				case drop[i]:
					if n := m.Annotations[refNameAnnotation]; n != "" {
						report = append(report, "Untagged: "+FamiliarName(n))
					}
				default:
					if m.Digest == found[0].desc.Digest {
						left = true
					}
					kept = append(kept, m)
				}
			}
			im.Manifests = kept
			if !left {
				report = append(report, "Deleted: "+found[0].id.String())
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The blobs of deleted images go now if no writer holds the store.
	if err := gcLayout(s.dir, cleanup.Report{}, 0); err != nil && !errors.Is(err, flock.ErrLocked) {
		return report, err
	}
	return report, nil
}
