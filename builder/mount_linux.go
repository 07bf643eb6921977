package builder

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/dockerfile"
	"github.com/layercommit/layercommit/internal/safepath"
	"github.com/layercommit/layercommit/sandbox"
	"github.com/layercommit/layercommit/unpack"
)

// runMount is one RUN --mount after expansion, with what it adds to the
// step's cache key. BuildKit's exec op key holds each mount's kind,
// target, options and, for a bind, the content of its source (a context
// path's checksum, a stage's state); a cache mount's contents and a
// secret's value are never in it.
type runMount struct {
	m      *dockerfile.Mount
	target string // absolute
	key    string
}

// parseRunMounts expands and checks RUN's --mounts and computes their
// part of the cache key; nothing is mounted yet.
func (b *build) parseRunMounts(ctx context.Context, s *stageState, in *dockerfile.RunInstr) ([]runMount, error) {
	var out []runMount
	nssh := 0
	for _, raw := range in.Mounts {
		m, err := dockerfile.ParseMount(raw, func(w string) (string, error) { return b.expand(s, in.Line, w) })
		if err != nil {
			var le *dockerfile.LineError
			if errors.As(err, &le) {
				return nil, err
			}
			return nil, lineErr(in.Line, "%w", err)
		}
		rm := runMount{m: m}
		if m.Type == "ssh" {
			// BuildKit (dockerfile2llb/convert_ssh.go, llb.AddSSHSocket):
			// id "default", the N-th ssh mount of the RUN at
			// /run/buildkit/ssh_agent.N, a 0600 root socket.
			if m.Source != "" {
				return nil, lineErr(in.Line, "ssh does not support source")
			}
			if m.ID == "" {
				m.ID = "default"
			}
			if m.Target == "" {
				m.Target = fmt.Sprintf("/run/buildkit/ssh_agent.%d", nssh)
			}
			nssh++
			if m.Mode == nil {
				mode := uint64(0o600)
				m.Mode = &mode
			}
			rm.target = m.Target
			rm.key = fmt.Sprintf("ssh id=%q target=%q required=%t%s", m.ID, m.Target, m.Required, perms(m))
			out = append(out, rm)
			continue
		}
		if m.Type == "secret" {
			id := m.ID
			if m.Source != "" {
				id = m.Source
			}
			if id == "" {
				id = path.Base(m.Target)
			}
			m.ID = id
			if m.Env == nil && m.Target == "" {
				m.Target = "/run/secrets/" + path.Base(id)
			}
			rm.target = m.Target
			rm.key = fmt.Sprintf("secret id=%q target=%q env=%v required=%t%s", id, m.Target, ptr(m.Env), m.Required, perms(m))
			out = append(out, rm)
			continue
		}
		target := m.Target
		if !path.IsAbs(path.Clean(target)) {
			target = path.Join("/", s.config().WorkingDir, target)
		}
		target = path.Clean(target)
		if target == "/" {
			return nil, lineErr(in.Line, "invalid mount target %q", target)
		}
		rm.target = target
		src := path.Join("/", m.Source)
		switch m.Type {
		case "tmpfs":
			rm.key = fmt.Sprintf("tmpfs size=%d", m.SizeLimit)
		case "cache":
			if m.ID == "" {
				m.ID = path.Clean(m.Target)
			}
			seed, err := b.mountSourceKey(ctx, s, in.Line, m, src)
			if err != nil {
				return nil, err
			}
			rm.key = fmt.Sprintf("cache id=%q sharing=%q seed=%s%s", m.ID, m.Sharing, seed, perms(m))
		case "bind":
			from, err := b.mountSourceKey(ctx, s, in.Line, m, src)
			if err != nil {
				return nil, err
			}
			rm.key = "bind " + from
		}
		rm.key = fmt.Sprintf("%s target=%q ro=%t", rm.key, target, m.ReadOnly)
		out = append(out, rm)
	}
	return out, nil
}

func ptr(p *string) string {
	if p == nil {
		return "-"
	}
	return strconv.Quote(*p)
}

func perms(m *dockerfile.Mount) string {
	s := ""
	for _, f := range []struct {
		n string
		v *uint64
	}{{"mode", m.Mode}, {"uid", m.UID}, {"gid", m.GID}} {
		if f.v != nil {
			s += fmt.Sprintf(" %s=%d", f.n, *f.v)
		}
	}
	return s
}

// mountSourceKey names the content a bind (or a cache's seed) comes
// from: the context's checksum at src, or a stage's or image's config
// digest (which names its layers) and src.
func (b *build) mountSourceKey(ctx context.Context, s *stageState, line int, m *dockerfile.Mount, src string) (string, error) {
	if local, ok := b.localContext(m.From); ok {
		c, err := openContext(local)
		if err != nil {
			return "", lineErr(line, "%w", err)
		}
		defer c.Close()
		d, err := b.digestSourcesTimes([]copySource{{fsys: contextFS{c}, rel: rel(src)}}, false, false)
		if err != nil {
			return "", lineErr(line, "mounting %s from context %s: %w", src, m.From, err)
		}
		return fmt.Sprintf("context %s %q sha256:%s", m.From, src, d), nil
	}
	if m.From == "" {
		if m.Type == "cache" {
			return "scratch", nil
		}
		d, err := b.digestSourcesTimes([]copySource{{fsys: contextFS{b.bctx}, rel: rel(src)}}, true, false)
		if err != nil {
			return "", lineErr(line, "mounting %s from the context: %w", src, err)
		}
		return fmt.Sprintf("context %q sha256:%s", src, d), nil
	}
	img, err := b.mountFrom(ctx, s, line, m)
	if err != nil {
		return "", err
	}
	id, err := img.ConfigName()
	if err != nil {
		return "", lineErr(line, "%w", err)
	}
	return fmt.Sprintf("from %s %q", id, src), nil
}

// mountFrom finds the stage or image that a mount's from= names.
func (b *build) mountFrom(ctx context.Context, s *stageState, line int, m *dockerfile.Mount) (imageLike, error) {
	if j, ok := b.stageIndex(m.From, s.stage.Index); ok {
		return stageImage{b.stages[j]}, nil
	}
	for _, st := range b.df.Stages[s.stage.Index:] {
		if st.From.Name != "" && st.From.Name == m.From {
			return nil, lineErr(line, "cannot mount from stage %q to %q, stage needs to be defined before current command", m.From, m.Target)
		}
	}
	img, err := b.openImage(ctx, m.From, s.platform)
	if err != nil {
		return nil, lineErr(line, "mount from %s: %w", m.From, err)
	}
	return imageOnly{img}, nil
}

// prepareMounts makes the sandbox mounts of rms in the step dir and
// returns them with the environment they add (secrets as env) and the
// release of the cache mounts they hold.
func (b *build) prepareMounts(ctx context.Context, s *stageState, line int, rms []runMount, dir string) (mounts []sandbox.Mount, env []string, release func(), err error) {
	var releases []func()
	releaseAll := func() {
		for _, r := range releases {
			r()
		}
	}
	defer func() {
		if err != nil {
			releaseAll()
		}
	}()
	empty := filepath.Join(dir, "mount-empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		return nil, nil, nil, err
	}
	for i, rm := range rms {
		m := rm.m
		sm := sandbox.Mount{Target: rm.target, ReadOnly: m.ReadOnly, SubPath: m.Source}
		switch m.Type {
		case "tmpfs":
			sm.Kind, sm.Size, sm.SubPath = "tmpfs", m.SizeLimit, ""
		case "secret":
			v, ok := b.o.Secrets[m.ID]
			if !ok {
				if m.Required {
					return nil, nil, nil, lineErr(line, "secret %s: not found (pass it with --secret id=%s,src=FILE or env=VAR)", m.ID, m.ID)
				}
				continue
			}
			if m.Env != nil {
				name := *m.Env
				if name == "" {
					name = m.ID
				}
				env = append(env, name+"="+string(v))
				if m.Target == "" {
					continue
				}
			}
			sm = sandbox.Mount{Target: m.Target, Kind: "file", Data: v, Mode: 0o400, ReadOnly: true}
			if m.Mode != nil {
				sm.Mode = uint32(*m.Mode)
			}
			if m.UID != nil {
				sm.UID = int(*m.UID)
			}
			if m.GID != nil {
				sm.GID = int(*m.GID)
			}
		case "ssh":
			agent, ok := b.o.SSH[m.ID]
			if !ok {
				if m.Required {
					return nil, nil, nil, lineErr(line, "no SSH key %q forwarded from the client (pass it with --ssh %s=SOCKET)", m.ID, m.ID)
				}
				continue
			}
			uid, gid := 0, 0
			if m.UID != nil {
				uid = int(*m.UID)
			}
			if m.GID != nil {
				gid = int(*m.GID)
			}
			p, err := newSSHProxy(filepath.Join(dir, fmt.Sprintf("mount-%d-ssh", i)), agent, os.FileMode(*m.Mode), uid, gid)
			if err != nil {
				return nil, nil, nil, lineErr(line, "ssh %s: %w", m.ID, err)
			}
			releases = append(releases, func() { p.Close() })
			sm = sandbox.Mount{Target: m.Target, Kind: "bind", Source: p.path}
		case "cache":
			cdir, rel, err := b.cacheMount(ctx, s, line, m, rm.key)
			if err != nil {
				return nil, nil, nil, err
			}
			releases = append(releases, rel)
			sm.Kind, sm.Source, sm.SubPath = "bind", cdir, ""
		case "bind":
			if _, ok := b.localContext(m.From); m.From == "" || ok {
				// The context (or a named local one) as BuildKit
				// delivers it.
				view, err := b.contextView(m.From)
				if err != nil {
					return nil, nil, nil, lineErr(line, "%w", err)
				}
				sm.Kind, sm.Source = "bind", view
				if !m.ReadOnly {
					sm.Kind, sm.Source, sm.Lowers = "overlay", "", []string{view, empty}
				}
			} else {
				img, err := b.mountFrom(ctx, s, line, m)
				if err != nil {
					return nil, nil, nil, err
				}
				lowers, err := img.dirs(ctx, b)
				if err != nil {
					return nil, nil, nil, lineErr(line, "%w", err)
				}
				// A read-only overlay needs two lowers: the empty dir
				// (twice for a scratch stage) makes up the count.
				sm.Kind, sm.Lowers = "overlay", append(append([]string(nil), lowers...), empty)
				if len(sm.Lowers) < 2 {
					sm.Lowers = append(sm.Lowers, empty)
				}
			}
			if sm.Kind == "overlay" && !m.ReadOnly {
				// Writes land in a throwaway upper dir, dropped with
				// the step dir (BuildKit's rw bind has no output).
				sm.Upper, sm.Work = filepath.Join(dir, fmt.Sprintf("mount-%d-upper", i)), filepath.Join(dir, fmt.Sprintf("mount-%d-work", i))
				for _, d := range []string{sm.Upper, sm.Work} {
					if err := os.Mkdir(d, 0o755); err != nil {
						return nil, nil, nil, err
					}
				}
			}
		}
		mounts = append(mounts, sm)
	}
	// BuildKit sets SSH_AUTH_SOCK to the first ssh mount's target unless
	// the environment has it (llb/exec.go), socket forwarded or not.
	for _, rm := range rms {
		if rm.m.Type != "ssh" {
			continue
		}
		if !hasEnv(s.config().Env, "SSH_AUTH_SOCK") {
			env = append(env, "SSH_AUTH_SOCK="+rm.m.Target)
		}
		break
	}
	return mounts, env, releaseAll, nil
}

// cacheMount opens the state dir's cache of m, made on first use as
// BuildKit makes it (solver/llbsolver/mounts getRefCacheDir,
// dockerfile2llb setCacheUIDGID), and returns the dir to mount:
//   - no from: an empty dir (mode, uid and gid when given, else 0755
//     root), keyed by its id (and the perms, which BuildKit makes as a
//     mkdir on scratch: another seed);
//   - from=STAGE|IMAGE: a copy of that file system, keyed by the id and
//     the stage (BuildKit: id:ref), of which source= is mounted; with
//     source=/ and mode, uid or gid, a /cache dir made in it with them
//     is mounted instead, as BuildKit mounts its mkdir.
//
// The seed is copied once, when the cache is made; later builds see what
// earlier RUNs left there.
func (b *build) cacheMount(ctx context.Context, s *stageState, line int, m *dockerfile.Mount, key string) (string, func(), error) {
	mode, uid, gid := os.FileMode(0o755), 0, 0
	if m.Mode != nil {
		mode = os.FileMode(*m.Mode)
	}
	if m.UID != nil {
		uid = int(*m.UID)
	}
	if m.GID != nil {
		gid = int(*m.GID)
	}
	src := path.Join("/", m.Source)
	permsSet := m.Mode != nil || m.UID != nil || m.GID != nil
	mkdirPerms := func(d string) error {
		if err := os.Chown(d, uid, gid); err != nil {
			return err
		}
		return os.Chmod(d, mode&os.ModePerm)
	}
	if m.From == "" {
		ckey := fmt.Sprintf("id=%q seed=scratch%s", m.ID, perms(m))
		dir, release, err := b.st.CacheMount(ckey, m.Sharing, mkdirPerms)
		if err != nil {
			return "", nil, lineErr(line, "cache mount %s: %w", m.ID, err)
		}
		if src == "/" {
			return dir, release, nil
		}
		p, err := cacheSubdir(dir, src)
		if err != nil {
			release()
			return "", nil, lineErr(line, "cache mount %s: %w", m.ID, err)
		}
		return p, release, nil
	}
	var seedName string
	var seed func(d string) error
	if local, ok := b.localContext(m.From); ok {
		// A named local context seeds it as BuildKit delivers it.
		// BuildKit gives each source= of it its own cache (observed with
		// v0.34: RUNs with the same id but another source do not share;
		// whether two with the same source share depends on the local
		// snapshot BuildKit picks, here they do).
		key, err := b.mountSourceKey(ctx, s, line, &dockerfile.Mount{From: m.From}, "/")
		if err != nil {
			return "", nil, err
		}
		seedName = fmt.Sprintf("%s source=%q", key, src)
		seed = func(d string) error {
			c, err := openContext(local)
			if err != nil {
				return err
			}
			defer c.Close()
			return c.copyTo(d)
		}
	} else {
		from, err := b.mountFrom(ctx, s, line, m)
		if err != nil {
			return "", nil, err
		}
		cfg, err := from.ConfigName()
		if err != nil {
			return "", nil, lineErr(line, "%w", err)
		}
		seedName = "from " + cfg.String()
		seed = func(d string) error { return unpackImage(ctx, from.image(), d) }
	}
	ckey := fmt.Sprintf("id=%q seed=%s", m.ID, seedName)
	sub := src
	if src == "/" && permsSet {
		ckey += " mkdir /cache" + perms(m)
		sub = "/cache"
	}
	dir, release, err := b.st.CacheMount(ckey, m.Sharing, func(d string) error {
		if err := seed(d); err != nil {
			return err
		}
		if sub == "/cache" {
			c := filepath.Join(d, "cache")
			if err := os.Mkdir(c, 0o755); err != nil {
				return err
			}
			return mkdirPerms(c)
		}
		return nil
	})
	if err != nil {
		return "", nil, lineErr(line, "cache mount %s from %s: %w", m.ID, m.From, err)
	}
	p, err := cacheSubdir(dir, sub)
	if err != nil {
		release()
		return "", nil, lineErr(line, "cache mount %s from %s: %w", m.ID, m.From, err)
	}
	return p, release, nil
}

// cacheSubdir resolves sub inside the cache dir (symlinks stay inside)
// and checks that it exists.
func cacheSubdir(dir, sub string) (string, error) {
	name, err := safepath.Clean(sub)
	if err != nil {
		return "", err
	}
	r, err := safepath.Open(dir)
	if err != nil {
		return "", err
	}
	defer r.Close()
	if name, err = r.Resolve(name); err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("source %s: not in the cache", sub)
	} else if err != nil {
		return "", fmt.Errorf("source %s: %w", sub, err)
	}
	return p, nil
}

// unpackImage applies img's layers in order into dir: its file system.
func unpackImage(ctx context.Context, img v1.Image, dir string) error {
	ls, err := img.Layers()
	if err != nil {
		return fmt.Errorf("reading layers: %w", err)
	}
	for _, l := range ls {
		rc, err := l.Uncompressed()
		if err != nil {
			return fmt.Errorf("reading a layer: %w", err)
		}
		_, err = unpack.Apply(ctx, dir, rc)
		if cerr := rc.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("unpacking a layer: %w", err)
		}
	}
	return nil
}

// imageLike is what a mount's from= names: a stage built earlier or an
// image.
type imageLike interface {
	ConfigName() (v1.Hash, error)
	image() v1.Image
	dirs(ctx context.Context, b *build) ([]string, error)
}

type stageImage struct{ s *stageState }

func (i stageImage) ConfigName() (v1.Hash, error) { return i.s.img.ConfigName() }
func (i stageImage) image() v1.Image              { return i.s.img }
func (i stageImage) dirs(ctx context.Context, b *build) ([]string, error) {
	// imageDirs, not lowerDirs: the stage is another goroutine's.
	return b.imageDirs(ctx, i.s.img)
}

type imageOnly struct{ img v1.Image }

func (i imageOnly) ConfigName() (v1.Hash, error) { return i.img.ConfigName() }
func (i imageOnly) image() v1.Image              { return i.img }
func (i imageOnly) dirs(ctx context.Context, b *build) ([]string, error) {
	return b.imageDirs(ctx, i.img)
}

func hasEnv(env []string, name string) bool {
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == name {
			return true
		}
	}
	return false
}

// localContext reports the directory of a named context that is a local
// directory (--build-context NAME=DIR, DIR absolute or starting with
// "."), as buildx takes a value that is no image reference.
func (b *build) localContext(name string) (string, bool) {
	if name == "" {
		return "", false
	}
	v, ok := b.o.BuildContexts[name]
	if !ok || !filepath.IsAbs(v) && !strings.HasPrefix(v, ".") {
		return "", false
	}
	if fi, err := os.Stat(v); err != nil || !fi.IsDir() {
		return "", false
	}
	return v, true
}
