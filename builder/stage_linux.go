package builder

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layercommit/layercommit/dockerfile"
	"github.com/layercommit/layercommit/image"
)

// stageState is a stage being built: its image so far and the state that
// instructions change, as the legacy builder's dispatchState.
type stageState struct {
	stage      *dockerfile.Stage
	img        v1.Image
	base       v1.Image // what FROM named; nil for scratch
	id         v1.Hash  // config digest of img
	cf         *v1.ConfigFile
	docker     bool // Docker media types (else OCI)
	args       map[string]*string
	argOrder   []string
	maintainer string
	cmdSet     bool
	lowers     []string          // overlay-form dirs, top first; nil until needed
	platform   ocispecs.Platform // what RUN executes: FROM --platform, else the target
	// env is BuildKit's build state environment (unused with Legacy):
	// the config's Env with the stage's ARG values over it, the latest
	// ENV or ARG of a name winning (addEnv). Words are expanded with it
	// and RUN runs with it; a stage FROM another inherits it with that
	// stage's ARGs.
	env []string
	// startInterval is the Healthcheck's StartInterval, which
	// v1.HealthConfig cannot hold: withConfig writes it into the config
	// JSON.
	startInterval time.Duration
}

func (s *stageState) config() *v1.Config { return &s.cf.Config }

// neededStages marks the stages target depends on through FROM,
// COPY --from and RUN --mount from= (names or indexes), and returns
// each needed stage's direct dependencies (earlier stages).
func (b *build) neededStages(target int) (map[int]bool, map[int][]int, error) {
	need := map[int]bool{}
	deps := map[int][]int{}
	late := map[int]bool{}
	var visit func(i int) error
	visit = func(i int) error {
		if need[i] {
			return nil
		}
		need[i] = true
		s := b.df.Stages[i]
		refs := []string{}
		img, err := b.lex.ProcessWord(s.From.Image, b.metaEnv())
		if err == nil {
			refs = append(refs, img)
		}
		for _, in := range s.Instructions {
			if c, ok := in.(*dockerfile.CopyInstr); ok && c.From != "" {
				refs = append(refs, c.From)
				if strings.Contains(c.From, "$") {
					// Expanded with the stage's own ARGs when it
					// runs: to be safe, it waits for every
					// earlier stage that is built.
					late[i] = true
					if f, err := b.lex.ProcessWord(c.From, b.metaEnv()); err == nil {
						refs = append(refs, f)
					}
				}
			}
			if r, ok := in.(*dockerfile.RunInstr); ok {
				for _, raw := range r.Mounts {
					// from= is never expanded (BuildKit refuses
					// variables there).
					m, err := dockerfile.ParseMount(raw, func(w string) (string, error) { return w, nil })
					if err == nil && m.From != "" {
						refs = append(refs, m.From)
					}
				}
			}
		}
		for _, d := range refs {
			if j, ok := b.stageIndex(d, i); ok {
				deps[i] = append(deps[i], j)
				if err := visit(j); err != nil {
					return err
				}
			}
		}
		return nil
	}
	err := visit(target)
	for i := range late {
		for j := 0; j < i; j++ {
			if need[j] {
				deps[i] = append(deps[i], j)
			}
		}
	}
	return need, deps, err
}

// stageIndex finds a stage by name, or by index for COPY --from=N, among
// the stages before "before".
func (b *build) stageIndex(ref string, before int) (int, bool) {
	ref = strings.ToLower(ref)
	for _, s := range b.df.Stages[:before] {
		if s.From.Name != "" && s.From.Name == ref {
			return s.Index, true
		}
	}
	var n int
	if _, err := fmt.Sscanf(ref, "%d", &n); err == nil && fmt.Sprint(n) == ref && n >= 0 && n < before {
		return n, true
	}
	return 0, false
}

// openImage resolves a FROM or COPY --from image for platform p: a
// --build-context name is replaced by its reference, which the caller's
// resolver opens.
func (b *build) openImage(ctx context.Context, ref string, p ocispecs.Platform) (v1.Image, error) {
	plat := v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant, OSVersion: p.OSVersion}
	key := ref + "\x00" + plat.String()
	// Stages building at once share the images; each is resolved once
	// (the lock is held while the resolver runs).
	b.imagesMu.Lock()
	defer b.imagesMu.Unlock()
	if img, ok := b.images[key]; ok {
		return img, nil
	}
	target := ref
	if r, ok := b.o.BuildContexts[ref]; ok {
		target = r
	}
	var img v1.Image
	var err error
	// A resolved image may read its blobs later with the context it was
	// opened with (a registry's): that is the caller's, which outlives
	// the build, not a stage's, which ends with it.
	if b.callerCtx != nil {
		ctx = b.callerCtx
	}
	switch {
	case b.o.ResolvePlatform != nil:
		img, err = b.o.ResolvePlatform(ctx, target, plat)
	case b.o.Resolve != nil:
		img, err = b.o.Resolve(ctx, target)
	default:
		return nil, fmt.Errorf("opening %s: the build has no resolver for images", target)
	}
	if err != nil {
		return nil, err
	}
	b.images[key] = img
	return img, nil
}

func (b *build) stepf(format string, args ...any) {
	fmt.Fprintf(b.progress, "Step %d/%d : %s\n", b.step.Add(1), b.steps, fmt.Sprintf(format, args...))
}

func (b *build) buildStage(ctx context.Context, st *dockerfile.Stage) (*stageState, error) {
	from := st.From
	b.stepf("%s", from.Original)
	platform := b.plat.target
	if from.Platform != "" {
		p, err := b.lex.ProcessWord(from.Platform, b.metaEnv())
		if err != nil {
			return nil, lineErr(from.Line, "failed to process arguments for platform %s: %w", from.Platform, err)
		}
		if p == "" {
			return nil, lineErr(from.Line, "empty platform value from expression %s", from.Platform)
		}
		if platform, err = parsePlatform(p); err != nil {
			return nil, lineErr(from.Line, "failed to parse platform %s: %w", from.Platform, err)
		}
	}
	name, err := b.lex.ProcessWord(from.Image, b.metaEnv())
	if err != nil {
		return nil, lineErr(from.Line, "%w", err)
	}
	if name == "" {
		return nil, lineErr(from.Line, "base name (%s) should not be blank", from.Image)
	}
	s := &stageState{stage: st, args: map[string]*string{}, platform: platform}
	empty := name == "scratch" // no base config: BuildKit's emptyImage
	if j, ok := b.stageIndex(name, st.Index); ok {
		prev := b.stages[j]
		s.img, s.docker, s.lowers = prev.img, prev.docker, prev.lowers
		s.base = prev.img
		s.startInterval = prev.startInterval
		if !b.o.Legacy {
			// BuildKit's stage inherits its base stage's build state:
			// environment and ARGs (dispatchState.init).
			s.env = slices.Clone(prev.env)
			s.argOrder = slices.Clone(prev.argOrder)
			s.args = maps.Clone(prev.args)
		}
	} else if name == "scratch" {
		s.docker = !b.o.OCIMediaTypes
		s.img = image.Scratch(!s.docker)
		// BuildKit runs a scratch stage on the target platform, whatever
		// its FROM --platform says.
		s.platform = b.plat.target
	} else if _, ok := b.localContext(name); ok {
		// A local named context: its tree on an empty image.
		empty = true
		s.docker = !b.o.OCIMediaTypes
		if s.img, err = b.localBase(ctx, s, name); err != nil {
			return nil, lineErr(from.Line, "FROM %s: %w", name, err)
		}
	} else {
		if s.img, err = b.openImage(ctx, name, platform); err != nil {
			return nil, lineErr(from.Line, "FROM %s: %w", name, err)
		}
		if s.docker, err = image.DockerMediaTypes(s.img); err != nil {
			return nil, lineErr(from.Line, "FROM %s: %w", name, err)
		}
		if s.docker && b.o.Compression.NeedsOCI() {
			return nil, lineErr(from.Line, "FROM %s: --compression %s needs OCI media types and the base has Docker's", name, b.o.Compression)
		}
		s.base = s.img
		if s.startInterval, err = startInterval(s.img); err != nil {
			return nil, lineErr(from.Line, "reading %s: %w", name, err)
		}
	}
	if s.id, err = s.img.ConfigName(); err != nil {
		return nil, lineErr(from.Line, "reading %s: %w", name, err)
	}
	cf, err := s.img.ConfigFile()
	if err != nil {
		return nil, lineErr(from.Line, "reading %s: %w", name, err)
	}
	s.cf = cf.DeepCopy()
	b.plat.imagePlatform(&s.cf.OS, &s.cf.Architecture, &s.cf.Variant, empty)
	if empty {
		// BuildKit's empty image works in "/" (the legacy builder left
		// it unset).
		s.cf.Config.WorkingDir = "/"
	}
	if s.cf.OS == "" {
		s.cf.OS = "linux"
	}
	if s.cf.Architecture == "" {
		s.cf.Architecture = goarch()
	}
	c := s.config()
	c.OpenStdin, c.StdinOnce = false, false
	if _, ok := lookupEnv(c.Env, "PATH"); !ok {
		c.Env = append(c.Env, defaultPath)
	}
	if s.env == nil {
		s.env = slices.Clone(c.Env)
	}
	fmt.Fprintf(b.progress, " ---> %s\n", short(s.id))
	// ONBUILD triggers of the base run first, and are not inherited.
	if triggers := c.OnBuild; len(triggers) > 0 {
		c.OnBuild = nil
		for _, t := range triggers {
			in, err := dockerfile.ParseTrigger(t, from.Line)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(b.progress, "# Executing build trigger: %s\n", t)
			if err := b.dispatch(ctx, s, in); err != nil {
				return nil, err
			}
		}
	}
	for _, in := range st.Instructions {
		b.stepf("%s", in.Source())
		if err := b.dispatch(ctx, s, in); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func short(h v1.Hash) string {
	if len(h.Hex) < 12 {
		return h.Hex
	}
	return h.Hex[:12]
}
