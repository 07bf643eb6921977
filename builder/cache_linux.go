package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
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
		s.id, cfg, createdBy, b.stepArgs(s), files, b.o.Compat.Name, s.docker, s.maintainer, s.cf.OS, s.cf.Architecture, s.cf.Variant)
	if e := b.o.SourceDateEpoch; e != nil {
		fmt.Fprintf(h, "epoch %d\n", *e)
	}
	// The layer's compressor is part of its identity (digest, media
	// type); keys of builds that name none are as before.
	if b.compressionNamed() {
		level := b.o.Compression.DefaultLevel()
		if b.o.CompressionLevel != nil {
			level = *b.o.CompressionLevel
		}
		fmt.Fprintf(h, "compression %s %d\n", b.o.Compression, level)
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

// CacheSource is a build cache imported from elsewhere (--cache-from).
// It is trusted only as far as its digests: the builder asks it for the
// step key it computed itself, copies the entry's blob into the state dir
// through statedir.ImportBlob (digest, size and diffID checked) and uses
// the entry's config only if it extends the step's parent (checkEntry).
type CacheSource interface {
	// Lookup returns the entry recorded under key.
	Lookup(key string) (*statedir.CacheEntry, bool)
	// OpenBlob opens the compressed blob desc names; the caller closes
	// it and verifies what it reads.
	OpenBlob(ctx context.Context, desc layer.Descriptor) (io.ReadCloser, error)
	// String names the source in warnings.
	String() string
}

// CacheRecord is one step's cache entry as the build used or made it.
type CacheRecord struct {
	// Stage is the index of the step's stage.
	Stage int
	Key   string
	Entry statedir.CacheEntry
}

// cacheLog is what a build keeps of its cache use.
type cacheLog struct {
	ctx    context.Context
	mu     sync.Mutex // guards steps: stages record from their own goroutines
	steps  []CacheRecord
	target int
}

func (b *build) record(s *stageState, key string, e *statedir.CacheEntry) {
	b.cache.mu.Lock()
	defer b.cache.mu.Unlock()
	b.cache.steps = append(b.cache.steps, CacheRecord{Stage: s.stage.Index, Key: key, Entry: *e})
}

// recorded returns the steps recorded, by stage and, within a stage, in
// the order they ran, whatever order parallel stages finished in.
func (c *cacheLog) recorded() []CacheRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := append([]CacheRecord(nil), c.steps...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Stage < out[j].Stage })
	return out
}

// lookup finds key in the state dir, else in the imported caches in
// order. An imported entry is stored in the state dir once its blob is
// in; a source whose blob is missing or corrupt is skipped with a
// warning (the step then runs).
func (b *build) lookup(key string) (*statedir.CacheEntry, bool) {
	if e, ok := b.st.Lookup(key); ok {
		return e, true
	}
	for _, src := range b.o.CacheFrom {
		e, ok := src.Lookup(key)
		if !ok {
			continue
		}
		if err := b.importEntry(src, key, e); err != nil {
			fmt.Fprintf(b.progress, "[WARNING]: cache from %s: step %.12s: %v; not used\n", src, key, err)
			continue
		}
		return e, true
	}
	return nil, false
}

// cacheCtx is the build's context, for the cache's own reads.
func (b *build) cacheCtx() context.Context {
	if b.cache.ctx == nil {
		return context.Background()
	}
	return b.cache.ctx
}

func (b *build) importEntry(src CacheSource, key string, e *statedir.CacheEntry) error {
	if e.Layer != nil {
		if _, ok := b.st.BlobLayer(*e.Layer); !ok {
			rc, err := src.OpenBlob(b.cacheCtx(), *e.Layer)
			if err != nil {
				return fmt.Errorf("fetching layer %s: %w", e.Layer.Digest, err)
			}
			err = b.st.ImportBlob(*e.Layer, rc)
			rc.Close()
			if err != nil {
				return err
			}
		}
	}
	return b.st.Store(key, e)
}

// checkEntry refuses a cached config that is not a child of the step's
// parent as commit makes one: parent ID in config.Image, the parent's
// history plus one entry, its diffIDs plus the entry's layer (if any).
func checkEntry(s *stageState, cf *v1.ConfigFile, e *statedir.CacheEntry) error {
	if cf.Config.Image != s.id.String() {
		return fmt.Errorf("its parent is %q, not %s", cf.Config.Image, s.id)
	}
	if len(cf.History) != len(s.cf.History)+1 {
		return fmt.Errorf("it has %d history entries, want %d", len(cf.History), len(s.cf.History)+1)
	}
	want := s.cf.RootFS.DiffIDs
	if e.Layer != nil {
		want = append(want[:len(want):len(want)], e.Layer.DiffID)
	}
	if len(cf.RootFS.DiffIDs) != len(want) {
		return fmt.Errorf("its layers do not extend the parent's")
	}
	for i := range want {
		if cf.RootFS.DiffIDs[i] != want[i] {
			return fmt.Errorf("its layers do not extend the parent's")
		}
	}
	return nil
}

// fromCache applies a cached result for key to s.
func (b *build) fromCache(s *stageState, key string) bool {
	if b.o.NoCache {
		return false
	}
	e, ok := b.lookup(key)
	if !ok {
		return false
	}
	var cf v1.ConfigFile
	if err := json.Unmarshal(e.Config, &cf); err != nil {
		return false
	}
	if err := checkEntry(s, &cf, e); err != nil {
		fmt.Fprintf(b.progress, "[WARNING]: cache entry %.12s not used: %v\n", key, err)
		return false
	}
	img := s.img
	if e.Layer != nil {
		l, ok := b.st.BlobLayer(*e.Layer)
		if !ok {
			return false
		}
		if l.Compression() == layer.None && !b.compressionNamed() && b.compressed(s) {
			// Kept uncompressed by a build whose image did not carry
			// it (Options.CacheAllStages); this one's does.
			cl, err := layer.Compress(b.cacheCtx(), b.st.BlobDir(), l, b.layerOptions(s)...)
			if err != nil {
				fmt.Fprintf(b.progress, "[WARNING]: cache entry %.12s not used: compressing its layer: %v\n", key, err)
				return false
			}
			desc := cl.Descriptor()
			e = &statedir.CacheEntry{Config: e.Config, Layer: &desc}
			if err := b.st.Store(key, e); err != nil {
				fmt.Fprintf(b.progress, "[WARNING]: cache entry %.12s: %v\n", key, err)
			}
			l = cl
		}
		var err error
		if img, err = mutate.Append(img, mutate.Addendum{Layer: l}); err != nil {
			return false
		}
		if b.st.HasLayer(e.Layer.DiffID) {
			b.dirs[e.Layer.DiffID] = b.st.LayerDir(e.Layer.DiffID)
		}
		s.lowers = nil
	}
	si, err := rawStartInterval(e.Config)
	if err != nil {
		return false
	}
	img, err = withConfig(img, &cf, si)
	if err != nil {
		return false
	}
	id, err := img.ConfigName()
	if err != nil {
		return false
	}
	fmt.Fprintf(b.progress, " ---> Using cache\n ---> %s\n", short(id))
	b.record(s, key, e)
	s.img, s.id, s.cf, s.startInterval = img, id, cf.DeepCopy(), si
	return true
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
	img, err := withConfig(img, cf, s.startInterval)
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
	entry := &statedir.CacheEntry{Config: raw, Layer: desc}
	if err := b.st.Store(key, entry); err != nil {
		return fmt.Errorf("storing build cache: %w", err)
	}
	b.record(s, key, entry)
	fmt.Fprintf(b.progress, " ---> %s\n", short(id))
	s.img, s.id, s.cf = img, id, cf
	return nil
}
