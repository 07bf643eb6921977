package builder

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/dockerfile"
	"github.com/layercommit/layercommit/sandbox"
	"github.com/layercommit/layercommit/statedir"
)

// Options describe one build.
type Options struct {
	// ContextDir is the build context.
	ContextDir string
	// Dockerfile is the Dockerfile's path (default ContextDir/Dockerfile).
	Dockerfile string
	// BuildArgs are --build-arg values; a nil value takes the variable
	// from the environment, as docker build does for --build-arg NAME.
	BuildArgs map[string]*string
	// BuildContexts maps names used in FROM and COPY --from to image
	// references (--build-context NAME=REF), which are then resolved.
	BuildContexts map[string]string
	// Resolve opens the image a FROM or COPY --from reference names
	// (after ARG expansion and BuildContexts; never a stage or scratch).
	// Each reference is resolved once per build.
	Resolve Resolver
	// ResolvePlatform, when set, is used instead of Resolve: it opens the
	// image for the platform the stage runs on (FROM --platform, else the
	// target), picking it from a multi-platform index.
	ResolvePlatform func(ctx context.Context, ref string, p v1.Platform) (v1.Image, error)
	// OCIMediaTypes gives images built FROM scratch OCI media types
	// rather than Docker's (the caller knows what its destination
	// prefers); images built on a base keep the base's family.
	OCIMediaTypes bool
	// Target is the stage to build (default: the last).
	Target string
	// Platform is the target platform, os/arch[/variant] (--platform;
	// default the host's). It sets TARGETPLATFORM and friends and the
	// image's platform; RUN needs a platform the host can run (FROM
	// --platform=$BUILDPLATFORM for build stages).
	Platform string
	// NoCache skips cache lookups; results are still stored.
	NoCache bool
	// SourceDateEpoch, when set, makes every created time this instant and
	// clamps file mtimes in new layers to it. The library reads no
	// environment: the caller parses SOURCE_DATE_EPOCH.
	SourceDateEpoch *int64
	// Secrets are the values of RUN --mount=type=secret by id (--secret
	// id=ID,src=FILE|env=VAR; the caller reads them). A value reaches
	// the RUN's sandbox only, through a pipe: it is in no layer, config,
	// cache entry or file of the state dir.
	Secrets map[string][]byte
	// HostNetwork gives RUN the host's network (default: none).
	HostNetwork bool
	// Compat picks whose tar bytes to write (compat.Default if zero).
	Compat compat.Profile
	// StateDir holds unpacked layers, blobs and the cache
	// (statedir.Default if empty).
	StateDir string
	// Progress receives step lines and the output of RUN; may be nil.
	Progress io.Writer
}

// StepError is a failed RUN: its exit code, line and output tail.
type StepError struct {
	Line     int
	Cmd      string
	ExitCode int
	Tail     string
}

func (e *StepError) Error() string {
	return fmt.Sprintf("Dockerfile:%d: the command '%s' returned a non-zero code: %d; last output:\n%s", e.Line, e.Cmd, e.ExitCode, e.Tail)
}

// defaultPath is what docker adds to a stage's Env when it has no PATH.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

var defaultShell = []string{"/bin/sh", "-c"}

// Resolver opens the image a reference names. It is the caller's: the
// builder knows no transport.
type Resolver func(ctx context.Context, ref string) (v1.Image, error)

// Result is a built image and what the build knows of it.
type Result struct {
	// Image is the target stage's image. Its layers are blobs of the state
	// dir (or of the bases): write it out before the state dir is
	// cleaned.
	Image v1.Image
	// ID is the image ID, the digest of its config.
	ID v1.Hash
	// Base is the image the target stage's FROM names (an image, or the
	// image of an earlier stage): Image is Base plus the stage's layers
	// and history. Nil for FROM scratch.
	Base v1.Image
}

// Build builds the Dockerfile's target stage and returns its image; the
// caller writes it wherever it wants.
func Build(ctx context.Context, o Options) (*Result, error) {
	b, err := newBuild(o)
	if err != nil {
		return nil, err
	}
	defer b.close()
	s, err := b.run(ctx)
	if err != nil {
		return nil, err
	}
	id, err := s.img.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("reading the built config: %w", err)
	}
	return &Result{Image: s.img, ID: id, Base: s.base}, nil
}

type build struct {
	o        Options
	df       *dockerfile.Dockerfile
	st       *statedir.Dir
	bctx     *buildContext
	initDir  string
	progress io.Writer
	lex      *dockerfile.Lex
	metaArgs map[string]*string // after --build-arg overrides
	usedArgs map[string]bool
	stages   map[int]*stageState
	images   map[string]v1.Image // FROM and --from references opened
	dirs     map[v1.Hash]string  // diffID -> overlay-form dir
	step     int
	steps    int
	plat     buildPlatforms
}

func newBuild(o Options) (*build, error) {
	if o.Compat.Name == "" {
		o.Compat = compat.Default
	}
	if o.StateDir == "" {
		o.StateDir = statedir.Default
	}
	if o.Dockerfile == "" {
		o.Dockerfile = filepath.Join(o.ContextDir, "Dockerfile")
	}
	b := &build{o: o, progress: o.Progress, usedArgs: map[string]bool{}, stages: map[int]*stageState{},
		images: map[string]v1.Image{}, dirs: map[v1.Hash]string{}}
	if b.progress == nil {
		b.progress = io.Discard
	}
	var err error
	if b.plat, err = newBuildPlatforms(o.Platform); err != nil {
		return nil, err
	}
	f, err := os.Open(o.Dockerfile)
	if err != nil {
		return nil, fmt.Errorf("reading Dockerfile: %w", err)
	}
	df, err := dockerfile.Parse(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	b.df = df
	for _, w := range df.Warnings {
		fmt.Fprintf(b.progress, "[WARNING]: %s\n", w)
	}
	b.lex = dockerfile.NewLex(df.EscapeToken)
	if b.bctx, err = openContext(o.ContextDir); err != nil {
		return nil, err
	}
	if b.st, err = statedir.Open(o.StateDir); err != nil {
		b.bctx.Close()
		return nil, err
	}
	if b.initDir, err = b.st.InitDir(sandbox.InitLayer); err != nil {
		b.close()
		return nil, fmt.Errorf("making init layer: %w", err)
	}
	return b, nil
}

func (b *build) close() {
	b.bctx.Close()
	b.st.Close()
}

// run builds the stages the target needs, in order.
func (b *build) run(ctx context.Context) (*stageState, error) {
	target := len(b.df.Stages) - 1
	if b.o.Target != "" {
		target = -1
		for _, s := range b.df.Stages {
			if s.From.Name == strings.ToLower(b.o.Target) {
				target = s.Index
			}
		}
		if target < 0 {
			return nil, fmt.Errorf("target stage %q could not be found", b.o.Target)
		}
	}
	b.metaArgs = map[string]*string{}
	for _, kv := range b.plat.automaticArgs(b.df.Stages[target].From.Name) {
		v := kv[1]
		if o, ok := b.buildArg(kv[0]); ok && o != nil {
			v = *o
		}
		b.metaArgs[kv[0]] = &v
	}
	for _, a := range b.df.MetaArgs {
		for _, kv := range a.Args {
			v, err := b.expandMeta(a.Line, kv)
			if err != nil {
				return nil, err
			}
			// A declaration without a value keeps the automatic one.
			if _, ok := b.metaArgs[kv.Key]; v != nil || !ok {
				b.metaArgs[kv.Key] = v
			}
		}
	}
	need, err := b.neededStages(target)
	if err != nil {
		return nil, err
	}
	for i := 0; i <= target; i++ {
		if need[i] {
			b.steps += 1 + len(b.df.Stages[i].Instructions)
		}
	}
	for i := 0; i <= target; i++ {
		if !need[i] {
			continue
		}
		s, err := b.buildStage(ctx, b.df.Stages[i])
		if err != nil {
			return nil, err
		}
		b.stages[i] = s
	}
	var unused []string
	for k := range b.o.BuildArgs {
		if !b.usedArgs[k] {
			unused = append(unused, k)
		}
	}
	if len(unused) > 0 {
		sort.Strings(unused)
		fmt.Fprintf(b.progress, "[Warning] One or more build-args %v were not consumed\n", unused)
	}
	return b.stages[target], nil
}
