package builder

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/dockerfile"
	"github.com/layercommit/layercommit/layer"
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
	// BuildContexts maps names used in FROM, COPY --from and RUN
	// --mount=from= to image references (--build-context NAME=REF),
	// which are then resolved, or to local directories (absolute or
	// starting with "."; BuildKit's local named contexts), delivered as
	// BuildKit delivers them (.dockerignore applied, every entry 0:0).
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
	// Legacy follows Docker's legacy builder (what `DOCKER_BUILDKIT=0
	// docker build` runs) where BuildKit's dockerfile frontend, the
	// default since Docker 23.0 and here, differs: an ENV beats an ARG
	// of its name (BuildKit: the later one wins, and a --build-arg beats
	// an earlier ENV), a stage FROM another starts without its ARGs,
	// WORKDIR's directory is made root-owned whatever USER says (and
	// WORKDIR / makes a layer), RUN's history lists its build
	// args sorted, and HEALTHCHECK --start-interval is refused.
	Legacy bool
	// Target is the stage to build (default: the last).
	Target string
	// Platform is the target platform, os/arch[/variant] (--platform;
	// default the host's). It sets TARGETPLATFORM and friends and the
	// image's platform; RUN needs a platform the host can run (FROM
	// --platform=$BUILDPLATFORM for build stages).
	Platform string
	// NoCache skips cache lookups; results are still stored.
	NoCache bool
	// CacheFrom are imported build caches (--cache-from), asked in order
	// for a step's key when the state dir has no entry for it.
	CacheFrom []CacheSource
	// SourceDateEpoch, when set, makes every created time this instant and
	// clamps file mtimes in new layers to it. The library reads no
	// environment: the caller parses SOURCE_DATE_EPOCH.
	SourceDateEpoch *int64
	// Secrets are the values of RUN --mount=type=secret by id (--secret
	// id=ID,src=FILE|env=VAR; the caller reads them). A value reaches
	// the RUN's sandbox only, through a pipe: it is in no layer, config,
	// cache entry or file of the state dir.
	Secrets map[string][]byte
	// SSH maps RUN --mount=type=ssh ids to ssh-agent sockets (--ssh
	// ID=SOCKET). Each mount gets its own socket, forwarded to the agent
	// while the RUN runs; the agent's keys never reach the state dir.
	SSH map[string]string
	// Network is the network of a RUN without --network (or with
	// --network=default): "default" (when empty) is a private network
	// namespace with outbound NAT through slirp4netns, as docker build's
	// bridge (the host's loopback services are not reachable); "none"
	// has only lo; "host" is the host's network (asked for here, so it
	// needs no entitlement, as buildx's --network=host).
	Network string
	// HostNetwork is Network "host" (kept for callers that set it).
	HostNetwork bool
	// Compression and CompressionLevel pick the compressor of the layers
	// the build writes (layer.Gzip at its default level when zero and
	// nil). Only gzip, zstd and none: the seekable formats need manifest
	// annotations the build cache does not keep. Zstd needs OCI media
	// types: a Docker-typed base is refused at its FROM.
	Compression      layer.Compression
	CompressionLevel *int
	// CacheAllStages says that a cache export of every stage's steps
	// (--cache-to mode=max) follows. Without it, when no Compression is
	// named, the layers of stages the image is not made of (imageStages)
	// are kept uncompressed: they stay in the local state dir, where
	// compressing them would buy nothing; a later build whose image or
	// cache export carries one compresses it then (fromCache), into the
	// blob it would have had.
	CacheAllStages bool
	// Allow are the entitlements granted, as BuildKit's --allow:
	// "network.host" lets RUN --network=host run, "security.insecure"
	// lets RUN --security=insecure run; without them such a RUN fails.
	Allow []string
	// Compat picks whose tar bytes to write (compat.Default if zero).
	Compat compat.Profile
	// StateDir holds unpacked layers, blobs and the cache
	// (statedir.Default if empty).
	StateDir string
	// Progress receives step lines and the output of RUN; may be nil.
	// Stages that build at once write to it in turns (one Write at a
	// time), so their lines interleave.
	Progress io.Writer
	// Parallelism bounds how many independent stages build at once
	// (default runtime.GOMAXPROCS(0); 1 builds them one after another in
	// Dockerfile order). The image does not depend on it.
	Parallelism int
	// Overlay picks how a step gets a writable root and its changes
	// (OverlayNative, OverlayFuse, OverlayNaive; --overlay): by default
	// the first that mounts in the state dir, a fallback reported to
	// Notice. The layers are the same file systems whichever is used.
	Overlay string
	// Notice receives the one line that reports a fallback from the
	// kernel's overlay (standard error when nil).
	Notice io.Writer
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
	// Steps are the cache entries of the build's steps, new or reused, in
	// the order they ran (what --cache-to exports).
	Steps []CacheRecord
	// Target is the index of the target stage.
	Target int
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
	return &Result{Image: s.img, ID: id, Base: s.base, Steps: b.cache.recorded(), Target: b.cache.target}, nil
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
	stages   []*stageState       // by index; set when the stage is built
	images   map[string]v1.Image // FROM and --from references opened
	imagesMu *sync.Mutex         // guards images
	dirs     map[v1.Hash]string  // diffID -> overlay-form dir
	step     *atomic.Int64
	// callerCtx is Build's context, for resolving images (see
	// openImage); stages run with a context of their own.
	callerCtx context.Context
	steps     int
	plat      buildPlatforms
	cache     *cacheLog // shared by the stages' copies (forStage)
	// views are the context copies RUN --mount binds (contextView),
	// shared by the stages' copies (forStage).
	views   map[string]string
	viewsMu *sync.Mutex
	// ovl is the overlay mechanism, chosen once (overlaymode_linux.go).
	ovl *overlayChoice
	// imageStages are the stages whose layers the target image holds
	// (stagesOfImage); read-only once the stages run.
	imageStages map[int]bool
}

func newBuild(o Options) (*build, error) {
	if o.Compat.Name == "" {
		o.Compat = compat.Default
	}
	switch o.Compression {
	case "", layer.Gzip, layer.Zstd, layer.None:
	default:
		return nil, fmt.Errorf("--compression %s is not taken by build (gzip, zstd or none; the build cache keeps no layer annotations)", o.Compression)
	}
	if o.StateDir == "" {
		o.StateDir = statedir.Default
	}
	if o.Dockerfile == "" {
		o.Dockerfile = filepath.Join(o.ContextDir, "Dockerfile")
	}
	b := &build{o: o, usedArgs: map[string]bool{}, images: map[string]v1.Image{}, imagesMu: new(sync.Mutex), cache: new(cacheLog),
		views: map[string]string{}, viewsMu: new(sync.Mutex),
		dirs: map[v1.Hash]string{}, step: new(atomic.Int64), ovl: new(overlayChoice)}
	// Stages building at once write progress through one lock: each
	// Write (a line, or a chunk of RUN output) stays whole.
	b.progress = &lockedWriter{w: io.Discard}
	if o.Progress != nil {
		b.progress = &lockedWriter{w: o.Progress}
	}
	var err error
	if err := checkNetworkOptions(o); err != nil {
		return nil, err
	}
	if b.plat, err = newBuildPlatforms(o.Platform); err != nil {
		return nil, err
	}
	if err := b.checkBuildKitArgs(); err != nil {
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
	b.stages = make([]*stageState, len(df.Stages))
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
	b.removeViews()
	b.bctx.Close()
	b.st.Close()
}

// run builds the stages the target needs, in order.
func (b *build) run(ctx context.Context) (*stageState, error) {
	b.cache.ctx = ctx
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
	need, deps, err := b.neededStages(target)
	if err != nil {
		return nil, err
	}
	b.imageStages = b.stagesOfImage(target)
	for i := 0; i <= target; i++ {
		if need[i] {
			b.steps += 1 + len(b.df.Stages[i].Instructions)
		}
	}
	// BuildKit refuses a build whose RUN needs an entitlement not
	// granted before it runs anything; so do we (a trigger's RUN is
	// checked when it runs).
	for i := 0; i <= target; i++ {
		for _, in := range b.df.Stages[i].Instructions {
			if r, ok := in.(*dockerfile.RunInstr); ok && need[i] {
				if err := b.entitled(r); err != nil {
					return nil, err
				}
			}
		}
	}
	if err := b.buildStages(ctx, target, need, deps); err != nil {
		return nil, err
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
	b.cache.target = target
	return b.stages[target], nil
}
