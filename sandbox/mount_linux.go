package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/internal/overlay"
	"github.com/layercommit/layercommit/internal/safepath"
)

// Mount is one RUN --mount as the sandbox sets it up: a source tree
// mounted at Target for the command only. What is mounted never reaches
// the upper dir; the mount points the sandbox had to create for a
// missing Target (every missing component) are removed after the command
// when still empty, as BuildKit's runc executor removes its mount stubs
// (recursively), so the layer holds none of them.
type Mount struct {
	// Target is the absolute path in the root.
	Target string
	// Kind picks the source:
	//   "bind":    the host path Source
	//   "overlay": an overlay of Lowers (with Upper and Work when
	//              writable, whose writes the caller then discards)
	//   "tmpfs":   a fresh tmpfs of Size bytes (0: the kernel's default)
	//   "file":    a file holding Data, Mode, UID and GID, made on a
	//              private tmpfs (never on disk: secrets)
	Kind   string
	Source string
	Lowers []string `json:",omitempty"`
	Upper  string   `json:",omitempty"`
	Work   string   `json:",omitempty"`
	// SubPath is the path inside the bind or overlay source that is
	// mounted, resolved inside it (symlinks cannot leave it).
	SubPath string `json:",omitempty"`
	Size    int64  `json:",omitempty"`
	Data    []byte `json:",omitempty"`
	Mode    uint32 `json:",omitempty"`
	UID     int    `json:",omitempty"`
	GID     int    `json:",omitempty"`
	// ReadOnly mounts it read-only.
	ReadOnly bool `json:",omitempty"`
}

// stub is a mount point the sandbox created, relative to the root.
type stub struct{ name string }

// setupMounts mounts s.Mounts into the merged root m (before pivot_root)
// and returns the mount points it made (deepest last) and the targets it
// mounted, both as names in the root. Scratch mounts (overlays, the
// secret tmpfs) go under s.Scratch, in this mount namespace only.
func setupMounts(s *Spec, m string) (stubs, targets []string, err error) {
	if len(s.Mounts) == 0 {
		return nil, nil, nil
	}
	root, err := safepath.Open(m)
	if err != nil {
		return nil, nil, err
	}
	defer root.Close()
	for i, mt := range s.Mounts {
		src, err := mountSource(s, i, mt)
		if err != nil {
			return nil, nil, fmt.Errorf("mount %s: %w", mt.Target, err)
		}
		var made []string
		target, err := mountPoint(root, m, mt.Target, src, &made)
		stubs = append(stubs, made...)
		if err != nil {
			return nil, nil, fmt.Errorf("mount %s: making mount point: %w", mt.Target, err)
		}
		host := filepath.Join(m, target)
		if mt.Kind == "tmpfs" {
			opts := "mode=1777"
			if mt.Size > 0 {
				opts += ",size=" + strconv.FormatInt(mt.Size, 10)
			}
			if err := unix.Mount("tmpfs", host, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
				return nil, nil, fmt.Errorf("mount %s: tmpfs: %w", mt.Target, err)
			}
		} else if err := unix.Mount(src, host, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return nil, nil, fmt.Errorf("mount %s: bind: %w", mt.Target, err)
		}
		targets = append(targets, target)
		if mt.ReadOnly {
			if err := unix.Mount("", host, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
				return nil, nil, fmt.Errorf("mount %s: making it read-only: %w", mt.Target, err)
			}
		}
	}
	return stubs, targets, nil
}

// mountSource prepares the host path bound at a mount's target ("" for
// tmpfs).
func mountSource(s *Spec, i int, mt Mount) (string, error) {
	scratch := filepath.Join(s.Scratch, strconv.Itoa(i))
	base := ""
	switch mt.Kind {
	case "tmpfs":
		return "", nil
	case "bind":
		base = mt.Source
	case "overlay":
		if s.Scratch == "" {
			return "", errors.New("no scratch dir")
		}
		if err := os.MkdirAll(scratch, 0o700); err != nil {
			return "", err
		}
		// Volatile: its writes are discarded anyway.
		if err := overlay.Mount(scratch, overlay.Options{Lowers: mt.Lowers, Upper: mt.Upper, Work: mt.Work, Volatile: true}); err != nil {
			return "", err
		}
		base = scratch
	case "file":
		if s.Scratch == "" {
			return "", errors.New("no scratch dir")
		}
		if err := os.MkdirAll(scratch, 0o700); err != nil {
			return "", err
		}
		if err := unix.Mount("tmpfs", scratch, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=700,size=4m"); err != nil {
			return "", fmt.Errorf("tmpfs: %w", err)
		}
		f := filepath.Join(scratch, "f")
		if err := os.WriteFile(f, mt.Data, 0o600); err != nil {
			return "", err
		}
		if err := os.Chown(f, mt.UID, mt.GID); err != nil {
			return "", err
		}
		if err := os.Chmod(f, os.FileMode(mt.Mode&0o7777)); err != nil {
			return "", err
		}
		return f, nil
	default:
		return "", fmt.Errorf("unknown mount kind %q", mt.Kind)
	}
	sub, err := safepath.Clean(mt.SubPath)
	if err != nil {
		return "", err
	}
	if sub == "." {
		return base, nil
	}
	r, err := safepath.Open(base)
	if err != nil {
		return "", err
	}
	defer r.Close()
	name, err := r.Resolve(sub)
	if err != nil {
		return "", err
	}
	p := filepath.Join(base, name)
	if _, err := os.Lstat(p); err != nil {
		return "", err
	}
	return p, nil
}

// mountPoint resolves target inside the root and creates what is missing
// of it (directories, and an empty file when src is not a directory, as
// runc does), appending each made name to made, top first. It runs
// before the command, when nothing else changes the root, so the
// resolved (symlink-free) name can be joined to m.
func mountPoint(root *safepath.Root, m, target, src string, made *[]string) (string, error) {
	name, err := safepath.Clean(target)
	if err != nil {
		return "", err
	}
	if name == "." {
		return "", errors.New("cannot mount over the root")
	}
	if name, err = root.Resolve(name); err != nil {
		return "", err
	}
	fileSrc := false
	if src != "" {
		fi, err := os.Stat(src)
		if err != nil {
			return "", err
		}
		fileSrc = !fi.IsDir()
	}
	parts := splitNames(name)
	for i := range parts {
		p := path.Join(parts[:i+1]...)
		host := filepath.Join(m, p)
		if _, err := os.Lstat(host); err == nil {
			continue
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		if i == len(parts)-1 && fileSrc {
			f, err := os.OpenFile(host, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
			if err != nil {
				return "", err
			}
			f.Close()
		} else if err := os.Mkdir(host, 0o755); err != nil {
			return "", err
		}
		*made = append(*made, p)
	}
	return name, nil
}

func splitNames(name string) []string {
	var out []string
	for name != "." && name != "" {
		dir, base := safepath.Split(name)
		out = append([]string{base}, out...)
		name = dir
	}
	return out
}

// removeStubs runs in the root after the command: it unmounts targets
// (last first) and removes each made mount point, deepest first, that is
// still an empty directory or an empty file, keeping its parent's times,
// as BuildKit's MountStubsCleaner does.
func removeStubs(stubs, targets []string) {
	for i := len(targets) - 1; i >= 0; i-- {
		_ = unix.Unmount("/"+targets[i], unix.MNT_DETACH)
	}
	for i := len(stubs) - 1; i >= 0; i-- {
		p := "/" + stubs[i]
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		if fi.IsDir() {
			if ents, err := os.ReadDir(p); err != nil || len(ents) > 0 {
				continue
			}
		} else if fi.Size() != 0 {
			continue
		}
		parent := filepath.Dir(p)
		var st unix.Stat_t
		if err := unix.Lstat(parent, &st); err != nil {
			continue
		}
		if err := os.Remove(p); err != nil {
			continue
		}
		_ = unix.UtimesNanoAt(unix.AT_FDCWD, parent, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
	}
}
