package builder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/containerd/platforms"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/dockerfile"
	"github.com/layercommit/layercommit/image"
	"github.com/layercommit/layercommit/internal/safepath"
	"github.com/layercommit/layercommit/layer"
	"github.com/layercommit/layercommit/sandbox"
)

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
	// The config's diffIDs, not the blobs decompressed once more:
	// UnpackLayer checks each stream against its diffID.
	ls, err := image.LayersWithDiffIDs(img)
	if err != nil {
		return nil, err
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
	opts := []layer.Option{layer.WithDockerMediaTypes(s.docker), layer.WithDiffOptions(dopts...)}
	switch {
	case b.compressionNamed():
		opts = append(opts, layer.WithCompression(b.o.Compression, b.o.CompressionLevel))
	case !b.compressed(s):
		opts = append(opts, layer.WithCompression(layer.None, nil))
	}
	return opts
}

// compressionNamed says whether the build names its layers' compressor
// (Options.Compression, CompressionLevel) rather than taking gzip's
// default.
func (b *build) compressionNamed() bool {
	return b.o.Compression != "" || b.o.CompressionLevel != nil
}

// compressed says whether the layers of s leave the state dir in this
// build (Options.CacheAllStages): s is one the image is made of, or a
// cache export of every stage follows.
func (b *build) compressed(s *stageState) bool {
	return b.o.CacheAllStages || b.imageStages == nil || b.imageStages[s.stage.Index]
}

// stagesOfImage are the stages whose layers the image of stage target
// holds: target and the stages it is FROM, transitively. A FROM that
// cannot be expanded here counts every stage.
func (b *build) stagesOfImage(target int) map[int]bool {
	out := map[int]bool{}
	for i := target; !out[i]; {
		out[i] = true
		img, err := b.lex.ProcessWord(b.df.Stages[i].From.Image, b.metaEnv())
		if err != nil {
			return nil
		}
		j, ok := b.stageIndex(img, i)
		if !ok {
			break
		}
		i = j
	}
	return out
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
// already exists). As BuildKit's dispatchWorkdir does, the directories
// it makes are owned by the config's User, resolved in the stage's own
// passwd and group files as a --chown is (a name it does not hold is
// root), and WORKDIR / makes no layer; with Legacy they are root's, as
// the legacy builder makes them, and every WORKDIR makes a layer.
func (b *build) workdir(ctx context.Context, s *stageState, line int) error {
	c := s.config()
	createdBy := s.nopCommentString("WORKDIR " + c.WorkingDir)
	if !b.o.Legacy {
		createdBy = "WORKDIR " + c.WorkingDir
		if c.WorkingDir == "/" {
			return b.commitMeta(ctx, s, line, createdBy)
		}
	}
	key := b.stepKey(s, createdBy, "")
	if b.fromCache(s, key) {
		return nil
	}
	user := c.User
	if b.o.Legacy {
		user = ""
	}
	return b.inOverlay(ctx, s, key, createdBy, line, func(files stepFiles) error {
		root := files.root
		var id Identity
		if user != "" {
			var err error
			if id, err = chownIdentity(rootFS{root}, user); err != nil {
				return err
			}
		}
		d, err := root.MkdirAllFunc(rel(c.WorkingDir), 0o755, func(dirfd int, name string) error {
			if user == "" {
				return nil
			}
			return safepath.LchownAt(dirfd, name, int(id.UID), int(id.GID))
		})
		if err != nil {
			return err
		}
		return d.Close()
	})
}

// runStep runs RUN in the sandbox and commits its upper dir.
func (b *build) runStep(ctx context.Context, s *stageState, in *dockerfile.RunInstr) error {
	c := s.config()
	if err := b.runnable(s, in.Line); err != nil {
		return err
	}
	if err := b.entitled(in); err != nil {
		return err
	}
	args, pipes := runArgs(s, in)
	buildArgs := b.allowedArgs(s)
	saveCmd := args
	if len(buildArgs) > 0 {
		// The legacy builder sorts them; BuildKit keeps their order.
		listed := append([]string(nil), buildArgs...)
		if b.o.Legacy {
			sort.Strings(listed)
		}
		saveCmd = append(append([]string{fmt.Sprintf("|%d", len(listed))}, listed...), args...)
	}
	createdBy := strings.Join(saveCmd, " ")
	keyed := createdBy + "\x00network=" + in.Network
	if h, ok := b.sandboxHostname(); ok {
		keyed += "\x00hostname=" + h
	}
	if in.Security == "insecure" {
		keyed += "\x00security=insecure"
	}
	for name, script := range pipes {
		keyed += fmt.Sprintf("\x00pipe %q %q", name, script)
	}
	rms, err := b.parseRunMounts(ctx, s, in)
	if err != nil {
		return err
	}
	for _, rm := range rms {
		keyed += "\x00mount " + rm.key
	}
	key := b.stepKey(s, keyed, "")
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
	if h, ok := b.sandboxHostname(); ok {
		hostname = h
	}
	network := b.runNetwork(in)
	binds, err := sandbox.NetworkEtcFiles(dir, hostname, network)
	if err != nil {
		return err
	}
	mounts, menv, release, err := b.prepareMounts(ctx, s, in.Line, rms, dir)
	if err != nil {
		return err
	}
	defer release()
	// BuildKit runs RUN with its build state's environment (the
	// config's Env with the ARGs over it); the legacy builder with the
	// Env, then the ARGs it does not set.
	env := append(append([]string(nil), c.Env...), buildArgs...)
	if !b.o.Legacy {
		env = slices.Clone(s.env)
	}
	env = append(append(env, b.proxyEnv()...), menv...)
	scratch := filepath.Join(dir, "mnt")
	if err := os.Mkdir(scratch, 0o700); err != nil {
		return err
	}
	root, err := b.mountStep(ctx, dir, append([]string{b.initDir}, lowers...), false)
	if err != nil {
		return lineErr(in.Line, "%w", err)
	}
	defer root.release()
	mounts, releaseMounts, err := b.readyMounts(ctx, dir, mounts)
	if err != nil {
		return lineErr(in.Line, "%w", err)
	}
	defer releaseMounts()
	spec := sandbox.Spec{Mounts: mounts, Scratch: scratch,
		Lowers: append([]string{b.initDir}, lowers...), Upper: upper, Work: work, Merged: root.merged, Ready: root.ready,
		Volatile: true, // the upper dir is adopted for this boot only (statedir.HasLayer)
		Binds:    binds, Hostname: hostname, Network: network, Insecure: in.Security == "insecure", Args: args, Env: env, User: c.User, Workdir: c.WorkingDir,
		Pipes: pipes,
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
	l, err := b.stepLayer(ctx, root, b.layerOptions(s)...)
	if err != nil {
		return lineErr(in.Line, "%w", err)
	}
	if root.ready {
		upper = "" // not in the kernel's overlay form: unpacked from the blob when needed
	}
	return b.commit(s, key, createdBy, l, upper)
}

// stepFiles is what a COPY or WORKDIR step writes through: root, the
// step's merged root, and toUpper, where not nil, which ends the merged
// view and gives the step's upper dir as a root instead. A directory the
// step made through root that no lower holds (a pure upper dir, opaque
// if a lower had it deleted) is the same directory in the upper dir, so
// what is written below it there is what writing through root would
// have put in the upper dir, without overlayfs's cost per name (about
// twice cp -a's time for a large tree) and with copy_file_range between
// files of one file system. After toUpper, root is closed and must not
// be used.
type stepFiles struct {
	root    *safepath.Root
	toUpper func() (*safepath.Root, error)
}

// inOverlay mounts s's layers with a fresh upper, calls fn with the
// merged root (and the way to its upper dir), unmounts and commits the
// upper as the step's layer.
func (b *build) inOverlay(ctx context.Context, s *stageState, key, createdBy string, line int, fn func(stepFiles) error) error {
	lowers, err := b.lowerDirs(ctx, s)
	if err != nil {
		return lineErr(line, "%w", err)
	}
	dir, upper, _, err := b.newStepDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ls := lowers
	if len(ls) == 0 {
		empty := filepath.Join(dir, "empty")
		if err := os.Mkdir(empty, 0o755); err != nil {
			return err
		}
		ls = []string{empty}
	}
	sr, err := b.mountStep(ctx, dir, ls, true)
	if err != nil {
		return lineErr(line, "%w", err)
	}
	defer sr.release()
	err = func() error {
		root, err := safepath.Open(sr.merged)
		if err != nil {
			return err
		}
		open := true
		defer func() {
			if open {
				root.Close()
			}
		}()
		files := stepFiles{root: root}
		if sr.detach != nil {
			files.toUpper = func() (*safepath.Root, error) {
				if open {
					root.Close()
					open = false
				}
				upper, err := sr.detach()
				if err != nil {
					return nil, err
				}
				return safepath.Open(upper)
			}
		}
		return fn(files)
	}()
	if err != nil {
		var le *dockerfile.LineError
		if errors.As(err, &le) {
			return err
		}
		return lineErr(line, "%w", err)
	}
	l, err := b.stepLayer(ctx, sr, b.layerOptions(s)...)
	if err != nil {
		return lineErr(line, "%w", err)
	}
	if sr.ready {
		upper = "" // not in the kernel's overlay form: unpacked from the blob when needed
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

// runnable refuses RUN in a stage whose platform the host cannot run,
// before anything is mounted.
func (b *build) runnable(s *stageState, line int) error {
	if b.plat.canRun(s.platform) {
		return nil
	}
	return lineErr(line, "RUN: cannot run %s binaries on this %s host (build such steps on the host with FROM --platform=$BUILDPLATFORM)",
		platforms.Format(s.platform), platforms.Format(b.plat.build))
}

// runArgs is the argv of RUN, as BuildKit makes it: a sole heredoc
// (RUN <<EOF) is run unexpanded, as a script mounted at /dev/pipes/NAME
// when it starts with "#!" (pipes holds it), else as the shell's command
// string; other heredocs follow the command line, each body then its
// delimiter, for the shell to read.
func runArgs(s *stageState, in *dockerfile.RunInstr) (args []string, pipes map[string]string) {
	if !in.Cmd.ShellForm {
		return append([]string(nil), in.Cmd.Args...), nil
	}
	cmdline := strings.Join(in.Cmd.Args, " ")
	if h, ok := in.SoleHeredoc(); ok {
		if strings.HasPrefix(h.Content, "#!") {
			return append(s.shell(), "/dev/pipes/"+h.Name), map[string]string{h.Name: h.Content}
		}
		return append(s.shell(), h.Content), nil
	}
	for _, h := range in.Heredocs {
		cmdline += "\n" + h.Content + h.Name
	}
	return append(s.shell(), cmdline), nil
}
