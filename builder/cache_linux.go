package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/layercommit/layercommit/layer"
	"github.com/layercommit/layercommit/statedir"
)

// stepKey is the cache key of a step: parent, the expanded instruction,
// the build args it sees, a digest of the files it copies, and what else
// changes its output bytes.
func (b *build) stepKey(s *stageState, createdBy string, files string) string {
	h := sha256.New()
	cfg, _ := json.Marshal(s.cf.Config)
	fmt.Fprintf(h, "parent %s\nconfig %s\nstep %q\nargs %q\nfiles %s\ncompat %s\ndocker %t\nmaintainer %q\nplatform %s/%s/%s\n",
		s.id, cfg, createdBy, b.allowedArgs(s), files, b.o.Compat.Name, s.docker, s.maintainer, s.cf.OS, s.cf.Architecture, s.cf.Variant)
	if e := b.o.SourceDateEpoch; e != nil {
		fmt.Fprintf(h, "epoch %d\n", *e)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (b *build) created() time.Time {
	if e := b.o.SourceDateEpoch; e != nil {
		return time.Unix(*e, 0).UTC()
	}
	return time.Now().UTC()
}

// commitMeta adds a history entry with empty_layer for a metadata step.
func (b *build) commitMeta(ctx context.Context, s *stageState, line int, createdBy string) error {
	key := b.stepKey(s, createdBy, "")
	if b.fromCache(s, key) {
		return nil
	}
	return b.commit(s, key, createdBy, nil, "")
}

// fromCache applies a cached result for key to s.
func (b *build) fromCache(s *stageState, key string) bool {
	if b.o.NoCache {
		return false
	}
	e, ok := b.st.Lookup(key)
	if !ok {
		return false
	}
	var cf v1.ConfigFile
	if err := json.Unmarshal(e.Config, &cf); err != nil {
		return false
	}
	img := s.img
	if e.Layer != nil {
		l, ok := b.st.BlobLayer(*e.Layer)
		if !ok {
			return false
		}
		var err error
		if img, err = mutate.Append(img, mutate.Addendum{Layer: l}); err != nil {
			return false
		}
		if dir := b.st.LayerDir(e.Layer.DiffID); dirExists(dir) {
			b.dirs[e.Layer.DiffID] = dir
		}
		s.lowers = nil
	}
	img, err := mutate.ConfigFile(img, &cf)
	if err != nil {
		return false
	}
	id, err := img.ConfigName()
	if err != nil {
		return false
	}
	fmt.Fprintf(b.progress, " ---> Using cache\n ---> %s\n", short(id))
	s.img, s.id, s.cf = img, id, cf.DeepCopy()
	return true
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// commit makes the step's image: the stage's config, a history entry and
// the layer l (nil for none), stores it in the cache under key and makes
// it the stage's image. upper, if set, is the layer's overlay-form dir,
// kept as a lower for later steps.
func (b *build) commit(s *stageState, key, createdBy string, l *layer.Layer, upper string) error {
	cf := s.cf.DeepCopy()
	created := b.created()
	cf.Created = v1.Time{Time: created}
	cf.Author = s.maintainer
	cf.Config.Image = s.id.String()
	cf.DockerVersion = b.o.Compat.DockerVersion
	cf.Container = ""
	h := v1.History{Created: cf.Created, CreatedBy: createdBy, Author: s.maintainer}
	img := s.img
	var desc *layer.Descriptor
	if l != nil && !l.Empty() {
		d := l.Descriptor()
		desc = &d
		var err error
		if img, err = mutate.Append(img, mutate.Addendum{Layer: l}); err != nil {
			return fmt.Errorf("appending layer: %w", err)
		}
		cf.RootFS.Type = "layers"
		cf.RootFS.DiffIDs = append(cf.RootFS.DiffIDs, d.DiffID)
		if upper != "" {
			if err := b.st.Adopt(upper, d.DiffID); err != nil {
				return err
			}
			b.dirs[d.DiffID] = b.st.LayerDir(d.DiffID)
		}
		s.lowers = nil
	} else {
		h.EmptyLayer = true
		if upper != "" {
			os.RemoveAll(upper)
		}
	}
	cf.History = append(cf.History, h)
	img, err := mutate.ConfigFile(img, cf)
	if err != nil {
		return err
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	id, err := img.ConfigName()
	if err != nil {
		return err
	}
	if err := b.st.Store(key, &statedir.CacheEntry{Config: raw, Layer: desc}); err != nil {
		return fmt.Errorf("storing build cache: %w", err)
	}
	fmt.Fprintf(b.progress, " ---> %s\n", short(id))
	s.img, s.id, s.cf = img, id, cf
	return nil
}
