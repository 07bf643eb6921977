package builder

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ignoreMask makes, in dir, an overlay lower that hides from the context
// what .dockerignore excludes: a whiteout (char 0/0) for each excluded
// entry, with plain directories leading to them. Stacked over the context
// dir it shows what BuildKit's context bind shows (the local source
// filtered by the same patterns): a directory excluded but holding a
// re-included path (!pattern) stays, with only what is kept.
func (c *buildContext) ignoreMask(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("making the .dockerignore mask: %w", err)
	}
	if c.ignore == nil {
		return nil
	}
	if _, err := c.maskDir(dir, "."); err != nil {
		return fmt.Errorf("making the .dockerignore mask: %w", err)
	}
	return nil
}

// maskDir masks the entries of the context dir rel and reports whether it
// keeps any of them.
func (c *buildContext) maskDir(mask, rel string) (kept bool, err error) {
	ents, err := fs.ReadDir(c.root.FS(), rel)
	if err != nil {
		return false, err
	}
	for _, e := range ents {
		p := path.Join(rel, e.Name())
		host := filepath.Join(mask, filepath.FromSlash(p))
		if !c.ignored(p) {
			if e.IsDir() {
				if err := os.Mkdir(host, 0o755); err != nil {
					return false, err
				}
				if _, err := c.maskDir(mask, p); err != nil {
					return false, err
				}
			}
			kept = true
			continue
		}
		if e.IsDir() && c.ignore.Exclusions() {
			if err := os.Mkdir(host, 0o755); err != nil {
				return false, err
			}
			sub, err := c.maskDir(mask, p)
			if err != nil {
				return false, err
			}
			if sub {
				kept = true
				continue
			}
			if err := os.RemoveAll(host); err != nil {
				return false, err
			}
		}
		if err := unix.Mknod(host, unix.S_IFCHR, 0); err != nil {
			return false, fmt.Errorf("whiteout %s: %w", p, err)
		}
	}
	return kept, nil
}
