package dockerroot

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/internal/atomicfile"
	"github.com/layercommit/layercommit/internal/flock"
	"github.com/layercommit/layercommit/internal/tarsplit"
)

// WriteOptions configure Write.
type WriteOptions struct {
	// Tag is a name[:tag] to point at the image; empty leaves it untagged.
	Tag string
	// Parent is the image ID recorded as the new image's parent (docker
	// commit's base image); zero records none.
	Parent v1.Hash
	// Profile picks tar-split's trailing empty segment.
	Profile compat.Profile
	// Force writes even when a dockerd is found running on the root.
	Force bool
	// checkpoint, when set, is called at named points of the write (for
	// crash tests).
	Checkpoint func(name string)
}

// TempPrefix starts the names of what Write builds before renaming it into
// place; gc removes leftovers.
const TempPrefix = ".layercommit-tmp-"

// TmpDir is where writers into the root keep temp space (layer blobs
// waiting for Write): entries named TempPrefix*, each held with a shared
// flock while its writer lives. GC removes the ones no process holds.
func (r *Root) TmpDir() string { return r.path("tmp") }

// PendingMarker is a file in an overlay2/<cache-id> dir that Write made
// but has not yet named in layerdb; gc removes such a dir when no layerdb
// entry names it.
const PendingMarker = ".layercommit-pending"

// Write stores img in the data root as dockerd would after a commit or a
// load, so that a (re)started dockerd lists and runs it: layerdb and
// overlay2 entries for each missing layer (the layer unpacked in overlay
// form, tar-split recorded from the exact stream), the config in imagedb,
// the parent and lastUpdated metadata and the tag in repositories.json.
// Every file is written under a temp name, synced and renamed; each layer
// directory appears in one rename. Write refuses a root a live dockerd
// uses unless o.Force, and holds a lock on the root while it writes.
func (r *Root) Write(ctx context.Context, img v1.Image, o WriteOptions) (v1.Hash, error) {
	cp := func(name string) {
		if o.Checkpoint != nil {
			o.Checkpoint(name)
		}
	}
	if !o.Force {
		if pid, ok := DaemonUsing(r.Dir); ok {
			return v1.Hash{}, fmt.Errorf("dockerd (pid %d) is running on %s: stop it first, or pass --force", pid, r.Dir)
		}
	}
	unlock, err := r.Lock()
	if err != nil {
		return v1.Hash{}, err
	}
	defer unlock()

	raw, err := img.RawConfigFile()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("reading image config: %w", err)
	}
	sum := sha256.Sum256(raw)
	id := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	var cfg imageConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return v1.Hash{}, fmt.Errorf("reading image config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("reading image layers: %w", err)
	}
	if len(layers) != len(cfg.RootFS.DiffIDs) {
		return v1.Hash{}, fmt.Errorf("image has %d layers but its config lists %d diffIDs", len(layers), len(cfg.RootFS.DiffIDs))
	}
	chains := diff.ChainIDs(cfg.RootFS.DiffIDs)
	var parent *Layer
	for i, l := range layers {
		existing, err := r.Layer(chains[i], cfg.RootFS.DiffIDs[i])
		if err == nil {
			parent = &existing
			continue
		}
		if _, serr := os.Stat(r.layerDir(chains[i])); serr == nil {
			return v1.Hash{}, fmt.Errorf("layer %s exists but cannot be used: %w", chains[i], err)
		}
		created, err := r.writeLayer(ctx, l, cfg.RootFS.DiffIDs[i], chains[i], parent, o.Profile, cp)
		if err != nil {
			return v1.Hash{}, fmt.Errorf("writing layer %d (%s): %w", i+1, cfg.RootFS.DiffIDs[i], err)
		}
		parent = &created
	}
	cp("layers-written")

	contentDir := r.contentDir()
	if err := os.MkdirAll(contentDir, 0o700); err != nil {
		return v1.Hash{}, err
	}
	if err := atomicfile.WriteFile(filepath.Join(contentDir, id.Hex), raw, 0o600); err != nil {
		return v1.Hash{}, err
	}
	cp("config-written")
	meta := filepath.Join(r.imageDir(), "imagedb", "metadata", "sha256", id.Hex)
	if o.Parent != (v1.Hash{}) || o.Tag != "" {
		if err := os.MkdirAll(meta, 0o700); err != nil {
			return v1.Hash{}, err
		}
	}
	if o.Parent != (v1.Hash{}) {
		if err := atomicfile.WriteFile(filepath.Join(meta, "parent"), []byte(o.Parent.String()), 0o600); err != nil {
			return v1.Hash{}, err
		}
	}
	if o.Tag != "" {
		if err := atomicfile.WriteFile(filepath.Join(meta, "lastUpdated"), []byte(time.Now().Format(time.RFC3339Nano)), 0o600); err != nil {
			return v1.Hash{}, err
		}
		if err := r.tag(o.Tag, id); err != nil {
			return v1.Hash{}, err
		}
	}
	cp("tagged")
	return id, nil
}

// tag points name[:tag] at id in repositories.json, replacing it whole.
func (r *Root) tag(ref string, id v1.Hash) error {
	repo, key, err := Familiar(ref)
	if err != nil {
		return err
	}
	repos, err := r.ReadRepositories()
	if err != nil {
		return err
	}
	if repos.Repositories[repo] == nil {
		repos.Repositories[repo] = map[string]string{}
	}
	repos.Repositories[repo][key] = id.String()
	b, err := json.Marshal(repos)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(r.imageDir(), "repositories.json"), b, 0o600)
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// newCacheID draws an overlay2 directory name as dockerd does: 32 random
// bytes in hex, drawn again when the first 12 characters are all digits.
func newCacheID() string {
	for {
		id := randomHex(32)
		if strings.Trim(id[:12], "0123456789") != "" {
			return id
		}
	}
}

// newLinkID draws an overlay2 short name: 26 base32 characters.
func newLinkID() string {
	b := make([]byte, 17)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base32.StdEncoding.EncodeToString(b)[:26]
}

// writeLayer creates the overlay2 directory and then the layerdb entry of
// one layer, each in one rename.
func (r *Root) writeLayer(ctx context.Context, l v1.Layer, diffID, chain v1.Hash, parent *Layer, p compat.Profile, cp func(string)) (Layer, error) {
	ov := r.path("overlay2")
	if err := os.MkdirAll(filepath.Join(ov, "l"), 0o700); err != nil {
		return Layer{}, err
	}
	if err := os.Chmod(ov, 0o710); err != nil {
		return Layer{}, err
	}
	cacheID, link := newCacheID(), newLinkID()
	tmp := filepath.Join(ov, TempPrefix+cacheID)
	if err := newOverlayDir(tmp, link, parent); err != nil {
		os.RemoveAll(tmp)
		return Layer{}, err
	}
	defer os.RemoveAll(tmp)

	// One pass: the stream is hashed (diffID), recorded by tar-split and
	// unpacked into diff/.
	ls, err := r.layerTmp()
	if err != nil {
		return Layer{}, err
	}
	defer os.RemoveAll(ls)
	diffDir := filepath.Join(tmp, "diff")
	if err := unpackRecorded(ctx, l, diffDir, filepath.Join(ls, "tar-split.json.gz"), diffID, p); err != nil {
		return Layer{}, err
	}
	cp("layer-unpacked")
	size, err := apparentSize(diffDir)
	if err != nil {
		return Layer{}, err
	}
	final := filepath.Join(ov, cacheID)
	if err := r.publishOverlayDir(tmp, final, link, parent); err != nil {
		return Layer{}, err
	}
	cp("overlay2-renamed")

	files := map[string]string{"diff": diffID.String(), "size": strconv.FormatInt(size, 10), "cache-id": cacheID}
	if parent != nil {
		files["parent"] = parent.ChainID.String()
	}
	if err := r.publishLayerDB(ls, chain, files); err != nil {
		return Layer{}, err
	}
	cp("layerdb-renamed")
	if err := os.Remove(filepath.Join(final, PendingMarker)); err != nil {
		return Layer{}, err
	}
	if err := atomicfile.SyncDir(final); err != nil {
		return Layer{}, err
	}
	return r.Layer(chain, diffID)
}

// newOverlayDir makes the overlay2 layer dir tmp as dockerd lays it out:
// an empty diff/, its short link name, and for a child layer the lower
// chain and work/. The pending marker names the dir as ours until its
// layerdb entry exists, so that gc removes it after a crash between the
// two renames (dockerd's BuildKit keeps overlay2 dirs that no layerdb
// entry names, too).
func newOverlayDir(tmp, link string, parent *Layer) error {
	if err := os.Mkdir(tmp, 0o710); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(tmp, PendingMarker), nil, 0o600); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(tmp, "diff"), 0o755); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(tmp, "link"), []byte(link), 0o644); err != nil {
		return err
	}
	if parent == nil {
		return nil
	}
	lower := append([]string{"l/" + parent.Link}, parent.Lower...)
	if err := atomicfile.WriteFile(filepath.Join(tmp, "lower"), []byte(strings.Join(lower, ":")), 0o644); err != nil {
		return err
	}
	return os.Mkdir(filepath.Join(tmp, "work"), 0o700)
}

// publishOverlayDir syncs the filled layer dir tmp, renames it to final,
// adds its l/ short link, marks the parent committed and syncs the dirs
// that changed.
func (r *Root) publishOverlayDir(tmp, final, link string, parent *Layer) error {
	if err := syncTree(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	ov := filepath.Dir(final)
	if err := os.Symlink(filepath.Join("..", filepath.Base(final), "diff"), filepath.Join(ov, "l", link)); err != nil {
		return err
	}
	if parent != nil {
		if err := atomicfile.WriteFile(r.path("overlay2", parent.CacheID, "committed"), nil, 0o600); err != nil {
			return err
		}
	}
	for _, d := range []string{ov, filepath.Join(ov, "l")} {
		if err := atomicfile.SyncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// publishLayerDB writes files into the write set ls (which already holds
// the tar-split) and renames it to the layerdb entry of chain.
func (r *Root) publishLayerDB(ls string, chain v1.Hash, files map[string]string) error {
	for name, content := range files {
		if err := atomicfile.WriteFile(filepath.Join(ls, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	if err := os.Chmod(ls, 0o700); err != nil {
		return err
	}
	dst := r.layerDir(chain)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	if err := os.Rename(ls, dst); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(dst))
}

// layerTmp makes a write set under layerdb/tmp, as dockerd does.
func (r *Root) layerTmp() (string, error) {
	dir := filepath.Join(r.imageDir(), "layerdb", "tmp")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	return os.MkdirTemp(dir, "write-set-")
}

// unpackRecorded unpacks l into dir in overlay form while recording its
// tar-split and checking its diffID (tarsplit.Unpack).
func unpackRecorded(ctx context.Context, l v1.Layer, dir, tarSplit string, diffID v1.Hash, p compat.Profile) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return fmt.Errorf("opening layer: %w", err)
	}
	defer rc.Close()
	_, err = tarsplit.Unpack(ctx, rc, dir, tarSplit, 0o644, diffID, p.TarSplitTrailingEmpty)
	return err
}

// apparentSize is dockerd's layer size: st_size of every non-directory,
// each inode once (symlinks count their target's length).
func apparentSize(dir string) (int64, error) {
	seen := map[uint64]bool{}
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if st.Size > 0 && !seen[st.Ino] {
			seen[st.Ino] = true
			total += st.Size
		}
		return nil
	})
	return total, err
}

// syncTree fsyncs every regular file and directory below dir, so that a
// rename of dir publishes durable content.
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		serr := f.Sync()
		f.Close()
		return serr
	})
}

// Lock takes the exclusive flock on the image store directory that Write
// holds for the duration of a write (and gc while it cleans); a second
// holder waits up to flock.Wait. Call the returned func to release it.
func (r *Root) Lock() (func(), error) {
	if err := os.MkdirAll(r.imageDir(), 0o700); err != nil {
		return nil, err
	}
	l, err := flock.Acquire(r.imageDir(), flock.Exclusive, flock.Wait, "Docker data root "+r.Dir)
	if err != nil {
		return nil, err
	}
	return l.Unlock, nil
}

// DaemonUsing reports a running dockerd whose data root is dir.
func DaemonUsing(dir string) (int, bool) {
	want, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return 0, false
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != "dockerd" {
			continue
		}
		root := daemonRoot(args[1:])
		if got, err := filepath.EvalSymlinks(root); err == nil && got == want {
			return pid, true
		}
	}
	return 0, false
}

// daemonRoot finds the data root in dockerd's arguments, then in its
// config file, then the default.
func daemonRoot(args []string) string {
	configFile := "/etc/docker/daemon.json"
	for i := 0; i < len(args); i++ {
		a := args[i]
		for _, flag := range []string{"--data-root", "-g", "--graph"} {
			if a == flag && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, flag+"="); ok {
				return v
			}
		}
		if a == "--config-file" && i+1 < len(args) {
			configFile = args[i+1]
		} else if v, ok := strings.CutPrefix(a, "--config-file="); ok {
			configFile = v
		}
	}
	if b, err := os.ReadFile(configFile); err == nil {
		var c struct {
			DataRoot string `json:"data-root"`
		}
		if json.Unmarshal(bytes.TrimSpace(b), &c) == nil && c.DataRoot != "" {
			return c.DataRoot
		}
	}
	return "/var/lib/docker"
}
