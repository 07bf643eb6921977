package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"runtime"
	"sync"

	"github.com/moby/patternmatcher"

	"github.com/layercommit/layercommit/dockerfile"
)

// buildStages builds the needed stages up to target, each as soon as the
// stages it depends on are built, up to Options.Parallelism at once, as
// BuildKit's solver runs independent vertices at once. A stage that is
// ready starts before a later one (Dockerfile order), so Parallelism 1 is
// the sequential build. The first error cancels the stages still
// building (their RUNs are killed, their mounts and step dirs removed by
// the steps' own cleanup) and is returned once they have all stopped.
func (b *build) buildStages(ctx context.Context, target int, need map[int]bool, deps map[int][]int) error {
	limit := b.o.Parallelism
	if limit <= 0 {
		limit = runtime.GOMAXPROCS(0)
	}
	b.callerCtx = ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		i   int
		s   *stageState
		sb  *build
		err error
	}
	depended := map[int]bool{}
	for _, ds := range deps {
		for _, d := range ds {
			depended[d] = true
		}
	}
	done := make(chan result)
	started, finished := map[int]bool{}, map[int]bool{}
	running := 0
	var first error
	for {
		for i := 0; first == nil && i <= target && running < limit; i++ {
			if !need[i] || started[i] || !allDone(deps[i], finished) {
				continue
			}
			started[i] = true
			running++
			sb := b.forStage()
			go func(i int) {
				s, err := sb.buildStage(ctx, b.df.Stages[i])
				if err == nil && depended[i] && sb.unpacked(s.img) {
					// Stages that use this one read its lower dirs:
					// set them now, while it is its own. Layers that
					// are only blobs (a cache hit) are not unpacked
					// here: COPY --from may need a few names of them
					// (extractPaths), and users read them through
					// imageDirs, which changes no stage.
					if _, err = sb.lowerDirs(ctx, s); err != nil {
						err = fmt.Errorf("unpacking the layers of stage %d: %w", i, err)
					}
				}
				done <- result{i, s, sb, err}
			}(i)
		}
		if running == 0 {
			break
		}
		r := <-done
		running--
		// What the stage learnt is kept even when it failed: its
		// layer dirs exist.
		maps.Copy(b.dirs, r.sb.dirs)
		maps.Copy(b.usedArgs, r.sb.usedArgs)
		if r.err != nil {
			if first == nil || (errors.Is(first, context.Canceled) && !errors.Is(r.err, context.Canceled)) {
				first = r.err
			}
			cancel()
			continue
		}
		b.stages[r.i] = r.s
		finished[r.i] = true
	}
	if first != nil {
		return first
	}
	if !finished[target] {
		return fmt.Errorf("internal error: stage %d was not built", target)
	}
	return nil
}

func allDone(deps []int, finished map[int]bool) bool {
	for _, d := range deps {
		if !finished[d] {
			return false
		}
	}
	return true
}

// forStage returns the build as one stage's goroutine sees it: what the
// stages share (options, state dir, images under their lock, the step
// counter, the built stages, progress) is shared; what a stage changes
// without a lock (the layer-dir memo, the used build args, the shell
// lexer, the .dockerignore matcher, which compiles its patterns lazily)
// is its own
// copy, merged back by buildStages.
func (b *build) forStage() *build {
	sb := *b
	sb.dirs = maps.Clone(b.dirs)
	sb.usedArgs = map[string]bool{}
	sb.lex = dockerfile.NewLex(b.df.EscapeToken) // BuildKit's Lex reuses one word buffer
	if b.bctx.ignore != nil {
		c := *b.bctx
		var pats []string
		for _, p := range b.bctx.ignore.Patterns() {
			s := p.String()
			if p.Exclusion() {
				s = "!" + s
			}
			pats = append(pats, s)
		}
		// The patterns were accepted once: New cannot fail on them.
		if pm, err := patternmatcher.New(pats); err == nil {
			c.ignore = pm
		}
		sb.bctx = &c
	}
	return &sb
}

// lockedWriter serializes Writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
