package diff

import (
	"context"
	"fmt"
	"strings"

	"github.com/moby/patternmatcher"
)

// Exclude returns src without the changes whose path patterns match, in
// .dockerignore syntax (moby/patternmatcher, relative to the root of the
// change set; a leading "/" is ignored; "!" re-includes). An excluded
// path leaves no entry, and so does everything below an excluded
// directory unless a "!" pattern brings it back, in which case the
// directories on its way are written before it (as they are in the change
// set). Excluding a path the change set deletes drops its whiteout: the
// base's version shows again in the image.
func Exclude(src Source, patterns []string) (Source, error) {
	clean := make([]string, 0, len(patterns))
	for _, p := range patterns {
		if p = strings.TrimSpace(p); p == "" {
			return nil, fmt.Errorf("empty --exclude pattern")
		}
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimLeft(strings.TrimPrefix(p, "!"), "/")
		if p == "" {
			return nil, fmt.Errorf("--exclude pattern %q names the root", patterns[len(clean)])
		}
		if neg {
			p = "!" + p
		}
		clean = append(clean, p)
	}
	pm, err := patternmatcher.New(clean)
	if err != nil {
		return nil, fmt.Errorf("bad --exclude pattern: %w", err)
	}
	for _, p := range pm.Patterns() {
		if _, err := pm.Matches(p.String()); err != nil {
			return nil, fmt.Errorf("bad --exclude pattern %q: %w", p.String(), err)
		}
	}
	return &excluded{src: src, pm: pm}, nil
}

type excluded struct {
	src Source
	pm  *patternmatcher.PatternMatcher
}

func (e *excluded) Changes(ctx context.Context, fn ChangeFunc) error {
	// held are the excluded directories on the way to the current path,
	// outermost first: written only if something below them is included.
	var held []Change
	return e.src.Changes(ctx, func(c Change) error {
		for len(held) > 0 && !strings.HasPrefix(c.Path, held[len(held)-1].Path+"/") {
			held = held[:len(held)-1]
		}
		out, err := e.pm.MatchesOrParentMatches(c.Path)
		if err != nil {
			return fmt.Errorf("matching %s against --exclude: %w", c.Path, err)
		}
		if out {
			if c.Kind == Add && c.Info.IsDir() && e.pm.Exclusions() {
				held = append(held, c)
			}
			return nil
		}
		for _, h := range held {
			if err := fn(h); err != nil {
				return err
			}
		}
		held = held[:0]
		return fn(c)
	})
}
