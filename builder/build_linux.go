package builder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/dockerfile"
	"github.com/layercommit/layercommit/image"
	"github.com/layercommit/layercommit/internal/overlay"
	"github.com/layercommit/layercommit/internal/safepath"
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
	// BuildContexts maps names used in FROM and COPY --from to image
	// references (--build-context NAME=REF), which are then resolved.
	BuildContexts map[string]string
	// Resolve opens the image a FROM or COPY --from reference names
	// (after ARG expansion and BuildContexts; never a stage or scratch).
	// Each reference is resolved once per build.
	Resolve Resolver
	// OCIMediaTypes gives images built FROM scratch OCI media types
	// rather than Docker's (the caller knows what its destination
	// prefers); images built on a base keep the base's family.
	OCIMediaTypes bool
	// Target is the stage to build (default: the last).
	Target string
	// NoCache skips cache lookups; results are still stored.
	NoCache bool
	// SourceDateEpoch, when set, makes every created time this instant and
	// clamps file mtimes in new layers to it. The library reads no
	// environment: the caller parses SOURCE_DATE_EPOCH.
	SourceDateEpoch *int64
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
}

// Build builds the Dockerfile's target stage and returns its image; the
// caller writes it wherever it wants.
func Build(ctx context.Context, o Options) (*Result, error) {
	b, err := newBuild(o)
	if err != nil {
		return nil, err
	}
	defer b.close()
	img, err := b.run(ctx)
	if err != nil {
		return nil, err
	}
	id, err := img.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("reading the built config: %w", err)
	}
	return &Result{Image: img, ID: id}, nil
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

// stageState is a stage being built: its image so far and the state that
// instructions change, as the legacy builder's dispatchState.
type stageState struct {
	stage      *dockerfile.Stage
	img        v1.Image
	id         v1.Hash // config digest of img
	cf         *v1.ConfigFile
	docker     bool // Docker media types (else OCI)
	args       map[string]*string
	argOrder   []string
	maintainer string
	cmdSet     bool
	lowers     []string // overlay-form dirs, top first; nil until needed
}

func (s *stageState) config() *v1.Config { return &s.cf.Config }

// run builds the stages the target needs, in order.
func (b *build) run(ctx context.Context) (v1.Image, error) {
	b.metaArgs = map[string]*string{}
	for _, a := range b.df.MetaArgs {
		for _, kv := range a.Args {
			v, err := b.expandMeta(a.Line, kv)
			if err != nil {
				return nil, err
			}
			b.metaArgs[kv.Key] = v
		}
	}
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
	return b.stages[target].img, nil
}

// expandMeta gives a meta ARG its value: --build-arg, else the default
// expanded with the meta args so far.
func (b *build) expandMeta(line int, kv dockerfile.KeyValue) (*string, error) {
	if v, ok := b.buildArg(kv.Key); ok {
		return v, nil
	}
	if kv.Value == nil {
		return nil, nil
	}
	v, err := b.lex.ProcessWord(*kv.Value, b.metaEnv())
	if err != nil {
		return nil, lineErr(line, "expanding ARG %s: %w", kv.Key, err)
	}
	return &v, nil
}

func (b *build) buildArg(k string) (*string, bool) {
	v, ok := b.o.BuildArgs[k]
	if !ok {
		return nil, false
	}
	b.usedArgs[k] = true
	if v == nil {
		if e, ok := os.LookupEnv(k); ok {
			return &e, true
		}
		return nil, true
	}
	return v, true
}

func (b *build) metaEnv() []string {
	var env []string
	for k, v := range b.metaArgs {
		if v != nil {
			env = append(env, k+"="+*v)
		}
	}
	sort.Strings(env)
	return env
}

// neededStages marks the stages target depends on through FROM and
// COPY --from (names or indexes).
func (b *build) neededStages(target int) (map[int]bool, error) {
	need := map[int]bool{}
	var visit func(i int) error
	visit = func(i int) error {
		if need[i] {
			return nil
		}
		need[i] = true
		s := b.df.Stages[i]
		deps := []string{}
		img, err := b.lex.ProcessWord(s.From.Image, b.metaEnv())
		if err == nil {
			deps = append(deps, img)
		}
		for _, in := range s.Instructions {
			if c, ok := in.(*dockerfile.CopyInstr); ok && c.From != "" {
				deps = append(deps, c.From)
			}
		}
		for _, d := range deps {
			if j, ok := b.stageIndex(d, i); ok {
				if err := visit(j); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return need, visit(target)
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

// openImage resolves a FROM or COPY --from image: a --build-context name
// is replaced by its reference, which the caller's resolver opens.
func (b *build) openImage(ctx context.Context, ref string) (v1.Image, error) {
	if img, ok := b.images[ref]; ok {
		return img, nil
	}
	target := ref
	if r, ok := b.o.BuildContexts[ref]; ok {
		target = r
	}
	if b.o.Resolve == nil {
		return nil, fmt.Errorf("opening %s: the build has no resolver for images", target)
	}
	img, err := b.o.Resolve(ctx, target)
	if err != nil {
		return nil, err
	}
	b.images[ref] = img
	return img, nil
}

func (b *build) stepf(format string, args ...any) {
	b.step++
	fmt.Fprintf(b.progress, "Step %d/%d : %s\n", b.step, b.steps, fmt.Sprintf(format, args...))
}

func (b *build) buildStage(ctx context.Context, st *dockerfile.Stage) (*stageState, error) {
	from := st.From
	b.stepf("%s", from.Original)
	if from.Platform != "" {
		p, err := b.lex.ProcessWord(from.Platform, b.metaEnv())
		if err != nil {
			return nil, lineErr(from.Line, "%w", err)
		}
		if want := "linux/" + goarch(); p != want && p != "linux" && p != "$BUILDPLATFORM" && p != "$TARGETPLATFORM" {
			return nil, lineErr(from.Line, "platform %s is not supported (only %s)", p, want)
		}
	}
	name, err := b.lex.ProcessWord(from.Image, b.metaEnv())
	if err != nil {
		return nil, lineErr(from.Line, "%w", err)
	}
	if name == "" {
		return nil, lineErr(from.Line, "base name (%s) should not be blank", from.Image)
	}
	s := &stageState{stage: st, args: map[string]*string{}}
	if j, ok := b.stageIndex(name, st.Index); ok {
		prev := b.stages[j]
		s.img, s.docker, s.lowers = prev.img, prev.docker, prev.lowers
	} else if name == "scratch" {
		s.docker = !b.o.OCIMediaTypes
		s.img = image.Scratch(!s.docker)
	} else {
		if s.img, err = b.openImage(ctx, name); err != nil {
			return nil, lineErr(from.Line, "FROM %s: %w", name, err)
		}
		if s.docker, err = image.DockerMediaTypes(s.img); err != nil {
			return nil, lineErr(from.Line, "FROM %s: %w", name, err)
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

// expansionEnv is the environment words are expanded with: the stage's
// Env, then the build args it declared that Env does not override.
func (b *build) expansionEnv(s *stageState) []string {
	return append(append([]string(nil), s.config().Env...), b.allowedArgs(s)...)
}

// allowedArgs are the stage's declared ARGs that have a value and are not
// overridden by Env, as "k=v", in declaration order.
func (b *build) allowedArgs(s *stageState) []string {
	var out []string
	for _, k := range s.argOrder {
		v := s.args[k]
		if v == nil {
			continue
		}
		if _, ok := lookupEnv(s.config().Env, k); ok {
			continue
		}
		out = append(out, k+"="+*v)
	}
	return out
}

func lookupEnv(env []string, k string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], k+"="); ok {
			return v, true
		}
	}
	return "", false
}

func (b *build) expand(s *stageState, line int, word string) (string, error) {
	v, err := b.lex.ProcessWord(word, b.expansionEnv(s))
	if err != nil {
		return "", lineErr(line, "%w", err)
	}
	return v, nil
}

func (s *stageState) shell() []string {
	if len(s.config().Shell) > 0 {
		return append([]string(nil), s.config().Shell...)
	}
	return append([]string(nil), defaultShell...)
}

// nopComment is the legacy builder's created_by for metadata steps:
// SHELL + "#(nop) " + the instruction (two spaces after "#(nop)").
func (s *stageState) nopComment(text string) string {
	return strings.Join(append(s.shell(), "#(nop) ", text), " ")
}

// nopCommentString is the one-argument form used for WORKDIR, COPY, ADD.
func (s *stageState) nopCommentString(text string) string {
	return strings.Join(append(s.shell(), "#(nop) "+text), " ")
}

// dispatch runs one instruction: ARG and MAINTAINER change the stage,
// RUN, COPY and ADD make layers, and every other instruction changes the
// config through dockerfile's Dispatcher, the one `commit --change` runs
// too; WORKDIR then also makes its directory.
func (b *build) dispatch(ctx context.Context, s *stageState, in dockerfile.Instruction) error {
	switch in := in.(type) {
	case *dockerfile.ArgInstr:
		return b.dispatchArg(ctx, s, in)
	case *dockerfile.MaintainerInstr:
		return b.dispatchMaintainer(ctx, s, in)
	case *dockerfile.RunInstr:
		return b.runStep(ctx, s, in)
	case *dockerfile.CopyInstr:
		return b.copyStep(ctx, s, in)
	}
	d := dockerfile.Dispatcher{Config: s.config(), Lex: b.lex, Args: b.allowedArgs(s), CmdSet: s.cmdSet}
	text, err := d.Dispatch(in)
	if err != nil {
		return err
	}
	s.cmdSet = d.CmdSet
	if _, ok := in.(*dockerfile.WorkdirInstr); ok {
		return b.workdir(ctx, s, in.Pos())
	}
	return b.commitMeta(ctx, s, in.Pos(), s.nopComment(text))
}

// dispatchArg declares the stage's ARGs: a --build-arg, else the
// expanded default, else the meta ARG of that name.
func (b *build) dispatchArg(ctx context.Context, s *stageState, in *dockerfile.ArgInstr) error {
	var parts []string
	for _, kv := range in.Args {
		var v *string
		if kv.Value != nil {
			x, err := b.expand(s, in.Line, *kv.Value)
			if err != nil {
				return err
			}
			v = &x
			parts = append(parts, kv.Key+"="+x)
		} else {
			parts = append(parts, kv.Key)
		}
		if o, ok := b.buildArg(kv.Key); ok {
			v = o
		} else if v == nil {
			v = b.metaArgs[kv.Key]
		}
		if _, seen := s.args[kv.Key]; !seen {
			s.argOrder = append(s.argOrder, kv.Key)
		}
		s.args[kv.Key] = v
	}
	return b.commitMeta(ctx, s, in.Line, s.nopComment("ARG "+strings.Join(parts, " ")))
}

// dispatchMaintainer sets the author of the stage's later images.
func (b *build) dispatchMaintainer(ctx context.Context, s *stageState, in *dockerfile.MaintainerInstr) error {
	v, err := b.expand(s, in.Line, in.Name)
	if err != nil {
		return err
	}
	s.maintainer = v
	return b.commitMeta(ctx, s, in.Line, s.nopComment("MAINTAINER "+v))
}

// stepKey is the cache key of a step: parent, the expanded instruction,
// the build args it sees, a digest of the files it copies, and what else
// changes its output bytes.
func (b *build) stepKey(s *stageState, createdBy string, files string) string {
	h := sha256.New()
	cfg, _ := json.Marshal(s.cf.Config)
	fmt.Fprintf(h, "parent %s\nconfig %s\nstep %q\nargs %q\nfiles %s\ncompat %s\ndocker %t\nmaintainer %q\n",
		s.id, cfg, createdBy, b.allowedArgs(s), files, b.o.Compat.Name, s.docker, s.maintainer)
	if e := b.o.SourceDateEpoch; e != nil {
		fmt.Fprintf(h, "epoch %d\n", *e)
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

// fromCache applies a cached result for key to s.
func (b *build) fromCache(s *stageState, key string) bool {
	if b.o.NoCache {
		return false
	}
	e, ok := b.st.Lookup(key)
	if !ok {
		return false
	}
	var cf v1.ConfigFile
	if err := json.Unmarshal(e.Config, &cf); err != nil {
		return false
	}
	img := s.img
	if e.Layer != nil {
		l, ok := b.st.BlobLayer(*e.Layer)
		if !ok {
			return false
		}
		var err error
		if img, err = mutate.Append(img, mutate.Addendum{Layer: l}); err != nil {
			return false
		}
		if dir := b.st.LayerDir(e.Layer.DiffID); dirExists(dir) {
			b.dirs[e.Layer.DiffID] = dir
		}
		s.lowers = nil
	}
	img, err := mutate.ConfigFile(img, &cf)
	if err != nil {
		return false
	}
	id, err := img.ConfigName()
	if err != nil {
		return false
	}
	fmt.Fprintf(b.progress, " ---> Using cache\n ---> %s\n", short(id))
	s.img, s.id, s.cf = img, id, cf.DeepCopy()
	return true
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
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
	img, err := mutate.ConfigFile(img, cf)
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
	if err := b.st.Store(key, &statedir.CacheEntry{Config: raw, Layer: desc}); err != nil {
		return fmt.Errorf("storing build cache: %w", err)
	}
	fmt.Fprintf(b.progress, " ---> %s\n", short(id))
	s.img, s.id, s.cf = img, id, cf
	return nil
}

// lowerDirs returns the overlay-form dirs of s's image, top first,
// unpacking base layers into the state dir once.
func (b *build) lowerDirs(ctx context.Context, s *stageState) ([]string, error) {
	if s.lowers != nil {
		return s.lowers, nil
	}
	dirs, err := b.imageDirs(ctx, s.img)
	if err != nil {
		return nil, err
	}
	s.lowers = dirs
	return dirs, nil
}

func (b *build) imageDirs(ctx context.Context, img v1.Image) ([]string, error) {
	ls, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("reading layers: %w", err)
	}
	var dirs []string
	for _, l := range ls {
		d, err := l.DiffID()
		if err != nil {
			return nil, err
		}
		dir, ok := b.dirs[d]
		if !ok {
			if dir, err = b.st.UnpackLayer(ctx, l); err != nil {
				return nil, err
			}
			b.dirs[d] = dir
		}
		dirs = append([]string{dir}, dirs...)
	}
	return dirs, nil
}

// layerOptions are the options of every layer a step writes.
func (b *build) layerOptions(s *stageState) []layer.Option {
	dopts := []diff.Option{diff.WithCompat(b.o.Compat)}
	if e := b.o.SourceDateEpoch; e != nil {
		dopts = append(dopts, diff.WithMtimeClamp(*e))
	}
	return []layer.Option{layer.WithDockerMediaTypes(s.docker), layer.WithDiffOptions(dopts...)}
}

// newUpper makes a step's upper and work dirs and returns the step dir.
func (b *build) newStepDir() (dir, upper, work string, err error) {
	dir, err = b.st.TempDir("step-")
	if err != nil {
		return "", "", "", err
	}
	upper, work = filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	for _, d := range []string{upper, work, filepath.Join(dir, "merged")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			os.RemoveAll(dir)
			return "", "", "", err
		}
	}
	return dir, upper, work, nil
}

// workdir runs WORKDIR: the directory is made in a layer (empty when it
// already exists), as the legacy builder does.
func (b *build) workdir(ctx context.Context, s *stageState, line int) error {
	c := s.config()
	createdBy := s.nopCommentString("WORKDIR " + c.WorkingDir)
	key := b.stepKey(s, createdBy, "")
	if b.fromCache(s, key) {
		return nil
	}
	return b.inOverlay(ctx, s, key, createdBy, line, func(root *safepath.Root) error {
		d, err := root.MkdirAll(rel(c.WorkingDir), 0o755)
		if err != nil {
			return err
		}
		return d.Close()
	})
}

// runStep runs RUN in the sandbox and commits its upper dir.
func (b *build) runStep(ctx context.Context, s *stageState, in *dockerfile.RunInstr) error {
	c := s.config()
	var args []string
	if in.Cmd.ShellForm {
		cmdline := strings.Join(in.Cmd.Args, " ")
		if len(in.Heredocs) == 1 && isHeredocOnly(cmdline, in.Heredocs[0].Name) {
			// RUN <<EOF ... EOF: the heredoc is the script.
			content := in.Heredocs[0].Content
			if in.Heredocs[0].Expand {
				var err error
				if content, err = b.expand(s, in.Line, content); err != nil {
					return err
				}
			}
			cmdline = content
		} else {
			// Other heredocs are passed to the shell, which reads them.
			for _, h := range in.Heredocs {
				cmdline += "\n" + h.Content + h.Name
			}
		}
		args = append(s.shell(), cmdline)
	} else {
		args = append([]string(nil), in.Cmd.Args...)
	}
	buildArgs := b.allowedArgs(s)
	saveCmd := args
	if len(buildArgs) > 0 {
		sorted := append([]string(nil), buildArgs...)
		sort.Strings(sorted)
		saveCmd = append(append([]string{fmt.Sprintf("|%d", len(sorted))}, sorted...), args...)
	}
	createdBy := strings.Join(saveCmd, " ")
	key := b.stepKey(s, createdBy+"\x00network="+in.Network, "")
	if b.fromCache(s, key) {
		return nil
	}
	lowers, err := b.lowerDirs(ctx, s)
	if err != nil {
		return lineErr(in.Line, "%w", err)
	}
	dir, upper, work, err := b.newStepDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	hostname := key[:12]
	hostNet := b.o.HostNetwork
	switch in.Network {
	case "none":
		hostNet = false
	case "host":
		hostNet = true
	}
	binds, err := sandbox.EtcFiles(dir, hostname, hostNet)
	if err != nil {
		return err
	}
	env := append(append([]string(nil), c.Env...), buildArgs...)
	spec := sandbox.Spec{
		Lowers: append([]string{b.initDir}, lowers...), Upper: upper, Work: work, Merged: filepath.Join(dir, "merged"),
		Binds: binds, Hostname: hostname, HostNet: hostNet, Args: args, Env: env, User: c.User, Workdir: c.WorkingDir,
	}
	tail := &tailBuffer{max: 4096}
	out := io.MultiWriter(b.progress, tail)
	code, err := sandbox.Run(ctx, spec, out, out)
	if err != nil {
		return lineErr(in.Line, "RUN: %w", err)
	}
	if code != 0 {
		return &StepError{Line: in.Line, Cmd: strings.Join(args, " "), ExitCode: code, Tail: tail.String()}
	}
	l, err := b.st.WriteLayer(ctx, upper, b.layerOptions(s)...)
	if err != nil {
		return lineErr(in.Line, "%w", err)
	}
	return b.commit(s, key, createdBy, l, upper)
}

// inOverlay mounts s's layers with a fresh upper, calls fn with the
// merged root, unmounts and commits the upper as the step's layer.
func (b *build) inOverlay(ctx context.Context, s *stageState, key, createdBy string, line int, fn func(*safepath.Root) error) error {
	lowers, err := b.lowerDirs(ctx, s)
	if err != nil {
		return lineErr(line, "%w", err)
	}
	dir, upper, work, err := b.newStepDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	merged := filepath.Join(dir, "merged")
	ls := lowers
	if len(ls) == 0 {
		empty := filepath.Join(dir, "empty")
		if err := os.Mkdir(empty, 0o755); err != nil {
			return err
		}
		ls = []string{empty}
	}
	if err := overlay.Mount(merged, overlay.Options{Lowers: ls, Upper: upper, Work: work}); err != nil {
		return lineErr(line, "%w", err)
	}
	err = func() error {
		root, err := safepath.Open(merged)
		if err != nil {
			return err
		}
		defer root.Close()
		return fn(root)
	}()
	if uerr := unmount(merged); err == nil && uerr != nil {
		err = uerr
	}
	if err != nil {
		var le *dockerfile.LineError
		if errors.As(err, &le) {
			return err
		}
		return lineErr(line, "%w", err)
	}
	l, err := b.st.WriteLayer(ctx, upper, b.layerOptions(s)...)
	if err != nil {
		return lineErr(line, "%w", err)
	}
	return b.commit(s, key, createdBy, l, upper)
}

// tailBuffer keeps the last max bytes written.
type tailBuffer struct {
	buf bytes.Buffer
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf.Write(p)
	if t.buf.Len() > 2*t.max {
		b := append([]byte(nil), t.buf.Bytes()[t.buf.Len()-t.max:]...)
		t.buf.Reset()
		t.buf.Write(b)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	b := t.buf.Bytes()
	if len(b) > t.max {
		b = b[len(b)-t.max:]
	}
	return string(b)
}

// isHeredocOnly reports whether a RUN command line is just one heredoc
// marker (<<EOF, <<-EOF, <<'EOF', <<"EOF").
func isHeredocOnly(cmdline, name string) bool {
	c := strings.TrimPrefix(strings.TrimSpace(cmdline), "<<")
	c = strings.TrimPrefix(c, "-")
	c = strings.Trim(c, `'"`)
	return c == name
}
