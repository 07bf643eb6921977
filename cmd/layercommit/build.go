package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/builder"
	"github.com/layercommit/layercommit/commit"
	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/export"
	"github.com/layercommit/layercommit/statedir"
)

func init() {
	register(command{"build", "build [-f DOCKERFILE] [--build-arg K=V]... [--build-context NAME=REF]... [--secret id=ID,src=FILE|env=VAR]... [--target STAGE] [--no-cache] [--platform OS/ARCH[/VARIANT]] [--source-date-epoch N] [--network none|host] [--compat P] [--state-dir DIR] [-q] [-t NAME]... [--push] [--label K=V]... [--squash] [--annotation [TYPE:]K=V]... [--iidfile FILE] [--metadata-file FILE] [-o DEST] CONTEXT", runBuild})
}

func runBuild(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("build", stderr)
	dockerfile := fs.String("f", "", "the Dockerfile (default CONTEXT/Dockerfile)")
	var buildArgs, buildContexts, secrets strList
	fs.Var(&secrets, "secret", "id=ID,src=FILE or id=ID,env=VAR: a secret for RUN --mount=type=secret (repeatable)")
	fs.Var(&buildArgs, "build-arg", "K=V, or K to take it from the environment (repeatable)")
	fs.Var(&buildContexts, "build-context", "NAME=REF: an image for FROM NAME and COPY --from=NAME (repeatable)")
	target := fs.String("target", "", "the stage to build (default the last)")
	noCache := fs.Bool("no-cache", false, "do not use the build cache")
	platform := fs.String("platform", "", "target platform OS/ARCH[/VARIANT] (default the host's; RUN needs one the host runs)")
	epoch := fs.String("source-date-epoch", "", "created times and mtimes clamped to this Unix time (default $SOURCE_DATE_EPOCH)")
	network := fs.String("network", "none", "network for RUN: none or host")
	profile := fs.String("compat", compat.Default.Name, "whose bytes to reproduce")
	stateDir := fs.String("state-dir", statedir.Default, "unpacked layers and the build cache")
	dockerRoot := fs.String("docker-root", "/var/lib/docker", "Docker data root")
	quiet := fs.Bool("q", false, "no progress display")
	out := fs.String("o", "", "destination reference (default the local store)")
	// The store, build metadata and push (../shared/CLI.md, second round).
	var tags, labels, annotations strList
	fs.Var(&tags, "t", "NAME[:TAG] into the local store, or pushed with --push (repeatable)")
	fs.Var(&tags, "tag", "same as -t")
	push := fs.Bool("push", false, "push the image to every -t name instead of storing it")
	fs.Var(&labels, "label", "K=V label in the image config (repeatable)")
	fs.Var(&annotations, "annotation", "[manifest[PLATFORM]:]K=V manifest annotation (repeatable)")
	squash := fs.Bool("squash", false, "squash the last stage's layers into one on its base, as docker build --squash")
	iidFile := fs.String("iidfile", "", "write the image ID to FILE")
	metaFile := fs.String("metadata-file", "", "write the build metadata (JSON) to FILE")
	// Flags may follow CONTEXT, as with docker build.
	var pos []string
	for {
		if err := parse(fs, args, stderr); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != 1 {
		return fmt.Errorf("build: want one CONTEXT directory, got %d arguments", len(pos))
	}
	if fi, err := os.Stat(pos[0]); err != nil || !fi.IsDir() {
		return fmt.Errorf("build: context %s is not a directory", pos[0])
	}
	p, err := compat.Lookup(*profile)
	if err != nil {
		return err
	}
	o := builder.Options{
		ContextDir: pos[0], Dockerfile: *dockerfile, Target: *target, NoCache: *noCache, Platform: *platform,
		Compat: p, StateDir: *stateDir,
		BuildArgs:     map[string]*string{},
		BuildContexts: map[string]string{},
	}
	for _, a := range buildArgs {
		k, v, ok := strings.Cut(a, "=")
		if k == "" {
			return fmt.Errorf("build: bad --build-arg %q", a)
		}
		if ok {
			o.BuildArgs[k] = &v
		} else {
			o.BuildArgs[k] = nil
		}
	}
	for _, c := range buildContexts {
		k, v, ok := strings.Cut(c, "=")
		if !ok || k == "" || v == "" {
			return fmt.Errorf("build: bad --build-context %q (want NAME=REF)", c)
		}
		o.BuildContexts[k] = v
	}
	for _, sec := range secrets {
		id, v, err := builder.ReadSecret(sec, os.LookupEnv)
		if err != nil {
			return fmt.Errorf("build: %w", err)
		}
		if o.Secrets == nil {
			o.Secrets = map[string][]byte{}
		}
		o.Secrets[id] = v
	}
	if o.SourceDateEpoch, err = sourceDateEpoch(*epoch); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	switch *network {
	case "none", "default", "":
	case "host":
		o.HostNetwork = true
	default:
		return fmt.Errorf("build: bad --network %q (none or host)", *network)
	}
	if !*quiet {
		o.Progress = stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
	defer stop()
	opts := []export.Option{export.WithDockerRoot(*dockerRoot), export.WithStateDir(*stateDir)}
	// Bases are picked from multi-platform indexes for the platform their
	// stage runs on.
	o.ResolvePlatform = func(ctx context.Context, ref string, p v1.Platform) (v1.Image, error) {
		return commit.Resolver(append(opts[:len(opts):len(opts)], func(eo *export.Options) { eo.Platform = p })...)(ctx, ref)
	}
	req := commit.BuildRequest{Build: o, To: *out, Tags: tags, Push: *push, Squash: *squash, Annotations: annotations, Options: opts}
	if req.Labels, err = keyValues("label", labels); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	res, err := commit.Build(ctx, req)
	if err != nil {
		return err
	}
	if err := writeResultFiles(*iidFile, res.ID, *metaFile, res.Metadata()); err != nil {
		return err
	}
	fmt.Fprintln(stdout, res.ID)
	return nil
}

// sourceDateEpoch parses --source-date-epoch, else $SOURCE_DATE_EPOCH:
// a whole number of seconds, nothing else ("12abc" is refused). Neither
// set gives nil.
func sourceDateEpoch(flag string) (*int64, error) {
	v, what := flag, "--source-date-epoch"
	if v == "" {
		v, what = os.Getenv("SOURCE_DATE_EPOCH"), "SOURCE_DATE_EPOCH"
	}
	if v == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("bad %s %q", what, v)
	}
	return &n, nil
}
