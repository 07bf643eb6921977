package main

import (
	"context"
	"flag"
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
	"github.com/layercommit/layercommit/containerdstore"
	"github.com/layercommit/layercommit/export"
	"github.com/layercommit/layercommit/layer"
	"github.com/layercommit/layercommit/progress"
	"github.com/layercommit/layercommit/statedir"
)

func init() {
	register(command{"build", "build [-f DOCKERFILE] [--build-arg K=V]... [--build-context NAME=REF]... [--secret id=ID,src=FILE|env=VAR]... [--ssh default|ID[=SOCKET]]... [--target STAGE] [--no-cache] [--platform OS/ARCH[/VARIANT]] [--source-date-epoch N] [--network default|none|host] [--allow ENTITLEMENT]... [--compat P] [--state-dir DIR] [-q] [-t NAME]... [--push] [--load] [--progress MODE] [--label K=V]... [--squash] [--compression gzip|zstd|none] [--compression-level N] [--annotation [TYPE:]K=V]... [--iidfile FILE] [--metadata-file FILE] [--cache-from SPEC]... [--cache-to SPEC]... [-o DEST]... CONTEXT", runBuild})
}

// overlayEnv is build --overlay's default.
const overlayEnv = "LAYERCOMMIT_OVERLAY"

func runBuild(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("build", stderr)
	dockerfile := fs.String("f", "", "the Dockerfile (default CONTEXT/Dockerfile)")
	var buildArgs, buildContexts, secrets, sshs strList
	fs.Var(&sshs, "ssh", "default|ID[=SOCKET]: an ssh-agent socket for RUN --mount=type=ssh (default $SSH_AUTH_SOCK; repeatable)")
	fs.Var(&secrets, "secret", "id=ID,src=FILE or id=ID,env=VAR: a secret for RUN --mount=type=secret (repeatable)")
	fs.Var(&buildArgs, "build-arg", "K=V, or K to take it from the environment (repeatable)")
	fs.Var(&buildContexts, "build-context", "NAME=REF or NAME=DIR (absolute or ./...): an image or a local directory for FROM NAME, COPY --from=NAME and RUN --mount=from=NAME (repeatable)")
	target := fs.String("target", "", "the stage to build (default the last)")
	noCache := fs.Bool("no-cache", false, "do not use the build cache")
	platform := fs.String("platform", "", "target platform OS/ARCH[/VARIANT] (default the host's; RUN needs one the host runs)")
	epoch := fs.String("source-date-epoch", "", "created times and mtimes clamped to this Unix time (default $SOURCE_DATE_EPOCH)")
	network := fs.String("network", "default", "network for RUN: default (private, NAT through slirp4netns), none or host")
	var allow strList
	fs.Var(&allow, "allow", "grant an entitlement: network.host or security.insecure (repeatable)")
	profile := fs.String("compat", compat.Default.Name, "whose bytes to reproduce")
	stateDir := fs.String("state-dir", statedir.Default, "unpacked layers and the build cache")
	overlayMode := fs.String("overlay", os.Getenv(overlayEnv), "how steps get their root: native (the kernel's overlayfs), fuse (fuse-overlayfs) or naive (copies, diffed); default the first that mounts, a fallback reported ($"+overlayEnv+")")
	dockerRoot := fs.String("docker-root", "/var/lib/docker", "Docker data root")
	containerdRoot := fs.String("containerd-root", containerdstore.DefaultRoot, "containerd's --root, for containerd: references")
	namespace := fs.String("namespace", "default", "containerd namespace, for containerd: references")
	quiet := fs.Bool("q", false, "no progress display")
	var outs strList
	fs.Var(&outs, "o", "destination reference or type=oci|docker|image|registry|local|tar,dest=...,name=...,push=true (repeatable; default the local store)")
	fs.Var(&outs, "output", "same as -o")
	// The store, build metadata and push (../shared/CLI.md, second round).
	var tags, labels, annotations strList
	fs.Var(&tags, "t", "NAME[:TAG] into the local store, or pushed with --push (repeatable)")
	fs.Var(&tags, "tag", "same as -t")
	push := fs.Bool("push", false, "push the image to every -t name instead of storing it")
	fs.Var(&labels, "label", "K=V label in the image config (repeatable)")
	fs.Var(&annotations, "annotation", "[manifest[PLATFORM]:]K=V manifest annotation (repeatable)")
	compression := fs.String("compression", "", "layer compression: gzip, zstd or none (default gzip)")
	compressionLevel := fs.String("compression-level", "", "compression level (default the compressor's)")
	squash := fs.Bool("squash", false, "squash the last stage's layers into one on its base, as docker build --squash")
	iidFile := fs.String("iidfile", "", "write the image ID to FILE")
	metaFile := fs.String("metadata-file", "", "write the build metadata (JSON) to FILE")
	progressMode := fs.String("progress", "", "auto, plain, tty, rawjson or quiet (default: docker build's legacy lines)")
	load := fs.Bool("load", false, "load the image into the running dockerd ($DOCKER_HOST) under every -t name")
	var cacheFrom, cacheTo strList
	fs.Var(&cacheFrom, "cache-from", "type=registry,ref=REF or type=local,src=DIR: import a build cache (repeatable)")
	fs.Var(&cacheTo, "cache-to", "type=registry,ref=REF[,mode=min|max] or type=local,dest=DIR: export the build cache (repeatable)")
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
	switch *overlayMode {
	case builder.OverlayAuto, builder.OverlayNative, builder.OverlayFuse, builder.OverlayNaive:
	default:
		from := "--overlay"
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "overlay" {
				from = ""
			}
		})
		if from == "" {
			return fmt.Errorf("build: --overlay %q: want native, fuse or naive", *overlayMode)
		}
		return fmt.Errorf("build: %s=%q: want native, fuse or naive (or unset, for the first that mounts)", overlayEnv, *overlayMode)
	}
	legacy, err := legacyBuilder(os.LookupEnv)
	if err != nil {
		return err
	}
	o := builder.Options{
		ContextDir: pos[0], Dockerfile: *dockerfile, Target: *target, NoCache: *noCache, Platform: *platform, Legacy: legacy,
		Compat: p, StateDir: *stateDir, Overlay: *overlayMode, Notice: stderr,
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
	for _, spec := range sshs {
		id, sock, err := builder.ParseSSH(spec, os.LookupEnv)
		if err != nil {
			return fmt.Errorf("build: %w", err)
		}
		if o.SSH == nil {
			o.SSH = map[string]string{}
		}
		o.SSH[id] = sock
	}
	if o.SourceDateEpoch, err = sourceDateEpoch(*epoch); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	if *compression != "" {
		if o.Compression, err = layer.ParseCompression(*compression); err != nil {
			return fmt.Errorf("build: %w", err)
		}
	}
	if *compressionLevel != "" {
		n, err := strconv.Atoi(*compressionLevel)
		if err != nil {
			return fmt.Errorf("build: bad --compression-level %q", *compressionLevel)
		}
		o.CompressionLevel = &n
	}
	switch *network {
	case "default", "none", "host":
	default:
		return fmt.Errorf("build: bad --network %q (default, none or host)", *network)
	}
	for _, a := range allow {
		if a != builder.EntitlementNetworkHost && a != builder.EntitlementSecurityInsecure {
			return fmt.Errorf("build: bad --allow %q (network.host or security.insecure)", a)
		}
	}
	o.Network, o.Allow = *network, allow
	if !*quiet {
		o.Progress = stderr
	}
	closeProgress := func() error { return nil }
	var counters *layer.Counters
	if *progressMode != "" {
		mode, err := progress.Resolve(*progressMode, isTerminal(stderr))
		if err != nil {
			return fmt.Errorf("build: %w", err)
		}
		if *quiet {
			mode = "quiet"
		}
		pw := progress.New(stderr, mode, nil)
		defer pw.Close()
		o.Progress = pw
		closeProgress = pw.Close
		if mode == "tty" {
			// Pushes draw their bytes done, rate and ETA.
			counters = &layer.Counters{}
			pw.Track(func() (progress.Transfer, bool) {
				total := counters.UploadSize.Load()
				return progress.Transfer{Label: "pushing", Done: counters.Uploaded.Load(), Total: total}, total > 0
			})
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
	defer stop()
	opts := []export.Option{export.WithDockerRoot(*dockerRoot), export.WithStateDir(*stateDir), export.WithDockerHost(os.Getenv("DOCKER_HOST")),
		export.WithContainerd(*containerdRoot, *namespace)}
	if counters != nil {
		opts = append(opts, export.WithCounters(counters))
	}
	// Bases are picked from multi-platform indexes for the platform their
	// stage runs on.
	o.ResolvePlatform = func(ctx context.Context, ref string, p v1.Platform) (v1.Image, error) {
		return commit.Resolver(append(opts[:len(opts):len(opts)], func(eo *export.Options) { eo.Platform = p })...)(ctx, ref)
	}
	req := commit.BuildRequest{Build: o, Outputs: outs, Tags: tags, Push: *push, Load: *load, Squash: *squash, Annotations: annotations,
		CacheFrom: cacheFrom, CacheTo: cacheTo, Options: opts}
	if req.Labels, err = keyValues("label", labels); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	res, err := commit.Build(ctx, req)
	closeProgress()
	if err != nil {
		return err
	}
	if err := writeResultFiles(*iidFile, res.ID, *metaFile, res.Metadata()); err != nil {
		return err
	}
	fmt.Fprintln(stdout, res.ID)
	return nil
}

// legacyBuilder reads DOCKER_BUILDKIT as the docker CLI does: a false
// boolean (0, false) selects the legacy builder's rules
// (builder.Options.Legacy), a true one or none BuildKit's.
func legacyBuilder(lookup func(string) (string, bool)) (bool, error) {
	v, ok := lookup("DOCKER_BUILDKIT")
	if !ok || v == "" {
		return false, nil
	}
	on, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("build: DOCKER_BUILDKIT environment variable expects boolean value: %w", err)
	}
	return !on, nil
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
