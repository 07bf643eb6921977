package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"time"

	units "github.com/docker/go-units"
	"golang.org/x/sys/unix"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/layercommit/layercommit/commit"
	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/containerdstore"
	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/export"
	"github.com/layercommit/layercommit/image"
	"github.com/layercommit/layercommit/layer"
	"github.com/layercommit/layercommit/progress"
	"github.com/layercommit/layercommit/statedir"
)

func init() {
	register(command{"commit", "commit [--from REF] (--upper DIR | --container ID [--runtime docker|podman|containerd] [--storage-root DIR] [--run-root DIR] [--format oci|docker] [--containerd-root DIR] [--containerd-state DIR] [--namespace NS]) [-c CHANGE]... [-m MSG] [-a AUTHOR] [--created RFC3339] [--docker-version STR] [--compression gzip|zstd|zstd:chunked|estargz|none] [--compression-level N] [--compat P] [--exclude PATTERN]... [--squash [--state-dir DIR]] [--source-date-epoch N] [--max-layer-size SIZE] [--xattrs LIST] [--sparse] [--userxattr] [-q] [-t NAME]... [--iidfile FILE] [-o DEST]", runCommit})
}

func runCommit(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("commit", stderr)
	f := commitFlags{
		from:          fs.String("from", "scratch", "base image reference"),
		upper:         fs.String("upper", "", "the container's overlay upper dir"),
		container:     fs.String("container", "", "a container in the Docker data root"),
		msg:           fs.String("m", "", "commit message (history comment)"),
		author:        fs.String("a", "", "author"),
		created:       fs.String("created", "", "creation time, RFC 3339 (default now)"),
		createdBy:     fs.String("created-by", "", "history created_by (default the base config's Cmd)"),
		dockerVersion: fs.String("docker-version", "", "docker_version to write (default the profile's)"),
		compression:   fs.String("compression", "gzip", "gzip, zstd, zstd:chunked, estargz or none"),
		level:         fs.String("compression-level", "", "compression level (default the compressor's)"),
		profile:       fs.String("compat", compat.Default.Name, "whose bytes to reproduce"),
		out:           fs.String("o", "", "destination reference"),
		quiet:         fs.Bool("q", false, "no progress display"),
		source:        fs.String("source", "overlay", "overlay, aufs or naive"),
		dockerRoot:    fs.String("docker-root", "/var/lib/docker", "Docker data root"),
		pause:         fs.Bool("pause", true, "with --container: freeze a running container while reading it (docker commit's default)"),
		force:         fs.Bool("force", false, "write into a docker-root a live dockerd uses"),
		squash:        fs.Bool("squash", false, "one layer holding the whole merged file system (base + changes); the base's history becomes the one new entry"),
		epoch:         fs.String("source-date-epoch", "", "created time and history at this Unix time, later mtimes clamped to it (default $SOURCE_DATE_EPOCH)"),
		maxLayer:      fs.String("max-layer-size", "", "split the change set into layers of at most SIZE uncompressed bytes (100MB, 1GiB: binary units, as docker's)"),
		stateDir:      fs.String("state-dir", statedir.Default, "state dir (--squash unpacks the base's layers there)"),
	}
	// podman's own store by default: root's, or an ordinary user's
	// rootless one (~/.local/share/containers/storage).
	storageRoot, runRoot := commit.DefaultStorageRoots()
	f.runtime, f.storageRoot, f.runRoot = fs.String("runtime", "", "with --container: docker, podman or containerd (default: the one whose store holds the container)"),
		fs.String("storage-root", storageRoot, "containers-storage root (--runtime podman)"), fs.String("run-root", runRoot, "containers-storage run root (--runtime podman)")
	f.containerdRoot, f.containerdState, f.namespace = fs.String("containerd-root", containerdstore.DefaultRoot, "containerd's --root (--runtime containerd)"),
		fs.String("containerd-state", "/run/containerd", "containerd's --state, where --pause finds a running task (--runtime containerd)"),
		fs.String("namespace", "default", "containerd namespace (--runtime containerd; containerd: destinations; Kubernetes' is k8s.io)")
	f.format = fs.String("format", "", "with --runtime podman: oci (the default) or docker, as podman commit --format")
	f.xattrs, f.sparse = fs.String("xattrs", "", "xattrs to keep: security.capability|all|NAME|PREFIX.*,... (default the profile's)"), fs.Bool("sparse", false, "write files with holes as PAX sparse entries")
	fs.Var(&f.exclude, "exclude", "leave out paths matching PATTERN (.dockerignore syntax, relative to the container root; repeatable; ! re-includes)")
	fs.Var(&f.changes, "c", "a docker commit --change instruction (repeatable)")
	fs.Var(&f.changes, "change", "same as -c")
	fs.Var(&f.lowers, "lower", "lower dir, top first (repeatable)")
	f.userxattr = fs.Bool("userxattr", false, "with --upper: read user.overlay.* xattrs (an overlay mounted with userxattr, as an unprivileged user mounts it)")
	// The local store (default destination) and the ID file.
	var tags strList
	fs.Var(&tags, "t", "NAME[:TAG] in the local store (repeatable; instead of -o)")
	fs.Var(&tags, "tag", "same as -t")
	iidFile := fs.String("iidfile", "", "write the image ID to FILE")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("commit: unexpected argument %q", fs.Arg(0))
	}
	f.set = map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	if (*f.container == "") == (*f.upper == "") {
		return fmt.Errorf("commit: give exactly one of --upper DIR and --container ID")
	}
	output, err := f.output()
	if err != nil {
		return err
	}
	if *f.out, err = storeDestination(*f.out, tags); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if *f.from, err = commit.Reference(*f.from, output.Options...); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	// Check the --change lines before any work; they are applied later.
	if err := image.ValidateChanges(f.changes, output.Compat); err != nil {
		return err
	}
	var createdAt time.Time
	if output.SourceDateEpoch != nil && *f.created != "" {
		return fmt.Errorf("commit: give one of --created and --source-date-epoch (or SOURCE_DATE_EPOCH)")
	}
	if *f.created != "" {
		if createdAt, err = time.Parse(time.RFC3339Nano, *f.created); err != nil {
			return fmt.Errorf("commit: bad --created %q (want RFC 3339)", *f.created)
		}
	}
	if w := commit.SparseWarning(output.Compat, *f.out); *f.sparse && w != "" {
		fmt.Fprintf(stderr, "layercommit: warning: %s\n", w)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
	defer stop()
	var id v1.Hash
	if *f.container != "" {
		var max int64
		if max, err = f.maxLayerSize(); err != nil {
			return err
		}
		req := f.containerRequest(output, createdAt)
		req.Squash, req.StateDir, req.MaxLayerSize = *f.squash, *f.stateDir, max
		done := showProgress(stderr, output.Counters, *f.quiet)
		id, err = commit.CommitContainer(ctx, req)
		done()
	} else {
		var req commit.CommitRequest
		if req, err = f.commitRequest(output, createdAt, stderr); err != nil {
			return err
		}
		done := showProgress(stderr, output.Counters, *f.quiet)
		id, err = commit.Commit(ctx, req)
		done()
	}
	if err != nil {
		return err
	}
	if err := tagMore(*f.stateDir, tags, *iidFile, id); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	fmt.Fprintln(stdout, id)
	return nil
}

// commitFlags are commit's flags as parsed; set names those given.
type commitFlags struct {
	from, upper, container, msg, author, created, createdBy, dockerVersion *string
	compression, level, profile, out, source, dockerRoot                   *string
	epoch, maxLayer, stateDir                                              *string
	quiet, pause, force, squash                                            *bool
	changes, lowers, exclude                                               strList
	set                                                                    map[string]bool
	runtime, storageRoot, runRoot, format                                  *string
	containerdRoot, containerdState, namespace                             *string
	xattrs                                                                 *string // --xattrs, --sparse: diff.Options
	sparse, userxattr                                                      *bool
}

// output is how the commit writes its layer and reaches its destination.
func (f *commitFlags) output() (commit.Output, error) {
	p, err := compat.Lookup(*f.profile)
	if err != nil {
		return commit.Output{}, err
	}
	comp, err := layer.ParseCompression(*f.compression)
	if err != nil {
		return commit.Output{}, err
	}
	var lvl *int
	if *f.level != "" {
		n, err := strconv.Atoi(*f.level)
		if err != nil {
			return commit.Output{}, fmt.Errorf("commit: bad --compression-level %q", *f.level)
		}
		lvl = &n
	}
	dopts, err := diff.Options(p, *f.xattrs, *f.sparse)
	if err != nil {
		return commit.Output{}, fmt.Errorf("commit: %w", err)
	}
	epoch, err := sourceDateEpoch(*f.epoch)
	if err != nil {
		return commit.Output{}, fmt.Errorf("commit: %w", err)
	}
	return commit.Output{
		Compat: p, Compression: comp, Level: lvl, Counters: &layer.Counters{}, Diff: dopts,
		Options: []export.Option{export.WithDockerRoot(*f.dockerRoot), export.WithForce(*f.force), export.WithStateDir(*f.stateDir),
			export.WithContainerd(*f.containerdRoot, *f.namespace)},
		Exclude: f.exclude, SourceDateEpoch: epoch,
	}, nil
}

// containerRequest is a commit --container.
func (f *commitFlags) containerRequest(output commit.Output, created time.Time) commit.ContainerRequest {
	req := commit.ContainerRequest{
		Container: *f.container, To: *f.out, Changes: f.changes, Author: *f.author, Comment: *f.msg,
		Created: created, Pause: *f.pause, Output: output,
		Runtime: *f.runtime, StorageRoot: *f.storageRoot, RunRoot: *f.runRoot, StoreCompat: !f.set["compat"], Format: *f.format,
		ContainerdRoot: *f.containerdRoot, ContainerdState: *f.containerdState, Namespace: *f.namespace,
	}
	if f.set["from"] {
		req.From = *f.from
	}
	if f.set["docker-version"] {
		req.DockerVersion = f.dockerVersion
	}
	return req
}

// maxLayerSize parses --max-layer-size with docker's units (RAMInBytes:
// k, m, g, t, p are powers of 1024, "b" and "i" optional); "" is 0, no
// split.
func (f *commitFlags) maxLayerSize() (int64, error) {
	if *f.maxLayer == "" {
		return 0, nil
	}
	n, err := units.RAMInBytes(*f.maxLayer)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("commit: bad --max-layer-size %q (want a size such as 100MB or 1GiB)", *f.maxLayer)
	}
	return n, nil
}

// commitRequest is a commit --upper.
func (f *commitFlags) commitRequest(output commit.Output, created time.Time, stderr io.Writer) (commit.CommitRequest, error) {
	if *f.squash && *f.source != "overlay" {
		return commit.CommitRequest{}, fmt.Errorf("commit: --squash reads an overlay upper dir, not --source %s", *f.source)
	}
	max, err := f.maxLayerSize()
	if err != nil {
		return commit.CommitRequest{}, err
	}
	if *f.squash && *f.userxattr {
		return commit.CommitRequest{}, fmt.Errorf("commit: --squash does not read --userxattr upper dirs")
	}
	src, err := diffSource(*f.source, *f.upper, f.lowers, *f.userxattr, false, stderr)
	if err != nil {
		return commit.CommitRequest{}, err
	}
	iopts := []image.Option{image.WithAuthor(*f.author), image.WithComment(*f.msg), image.WithChanges(f.changes...)}
	if !created.IsZero() {
		iopts = append(iopts, image.WithCreated(created))
	}
	if *f.createdBy != "" {
		iopts = append(iopts, image.WithCreatedBy(*f.createdBy))
	}
	dv := output.Compat.DockerVersion
	if *f.dockerVersion != "" {
		dv = *f.dockerVersion
	}
	return commit.CommitRequest{From: *f.from, Changes: src, To: *f.out,
		Image: append(iopts, image.WithDockerVersion(dv)), Output: output,
		Squash: *f.squash, Upper: *f.upper, StateDir: *f.stateDir, MaxLayerSize: max}, nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// showProgress redraws one status line on w while work goes on, only if w
// is a terminal and quiet is not set. The returned func stops it and
// clears the line.
func showProgress(w io.Writer, c *layer.Counters, quiet bool) func() {
	if quiet || !isTerminal(w) {
		return func() {}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		start := time.Now()
		var pushStart time.Time
		for {
			// Drawn at once, then at every tick.
			scanned := c.TarBytes.Load()
			line := fmt.Sprintf("%d files, %s scanned, %s, %s compressed", c.Files.Load(), progress.Bytes(scanned),
				progress.Rate(scanned, time.Since(start)), progress.Bytes(c.BlobBytes.Load()))
			if total := c.UploadSize.Load(); total > 0 {
				if pushStart.IsZero() {
					pushStart = time.Now()
				}
				line = progress.FormatTransfer(progress.Transfer{Label: "pushing", Done: c.Uploaded.Load(), Total: total}, time.Since(pushStart))
			}
			fmt.Fprintf(w, "\r\033[K%s", line)
			select {
			case <-stop:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(stop); wg.Wait() }
}
