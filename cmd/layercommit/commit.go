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

	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/commit"
	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/export"
	"github.com/layercommit/layercommit/image"
	"github.com/layercommit/layercommit/layer"
	"github.com/layercommit/layercommit/statedir"
)

func init() {
	register(command{"commit", "commit [--from REF] (--upper DIR | --container ID) [-c CHANGE]... [-m MSG] [-a AUTHOR] [--created RFC3339] [--docker-version STR] [--compression gzip|zstd|none] [--compression-level N] [--compat P] [-q] -o DEST", runCommit})
}

func runCommit(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("commit", stderr)
	from := fs.String("from", "scratch", "base image reference")
	upper := fs.String("upper", "", "the container's overlay upper dir")
	container := fs.String("container", "", "a container in the Docker data root")
	var changes, lowers strList
	fs.Var(&changes, "c", "a docker commit --change instruction (repeatable)")
	fs.Var(&changes, "change", "same as -c")
	msg := fs.String("m", "", "commit message (history comment)")
	author := fs.String("a", "", "author")
	created := fs.String("created", "", "creation time, RFC 3339 (default now)")
	createdBy := fs.String("created-by", "", "history created_by (default the base config's Cmd)")
	dockerVersion := fs.String("docker-version", "", "docker_version to write (default the profile's)")
	compression := fs.String("compression", "gzip", "gzip, zstd or none")
	level := fs.String("compression-level", "", "compression level (default the compressor's)")
	profile := fs.String("compat", compat.Default.Name, "whose bytes to reproduce")
	out := fs.String("o", "", "destination reference")
	quiet := fs.Bool("q", false, "no progress display")
	source := fs.String("source", "overlay", "overlay, aufs or naive")
	fs.Var(&lowers, "lower", "lower dir, top first (repeatable)")
	dockerRoot := fs.String("docker-root", "/var/lib/docker", "Docker data root")
	fs.String("state-dir", statedir.Default, "state dir")
	pause := fs.Bool("pause", true, "with --container: freeze a running container while reading it (docker commit's default)")
	force := fs.Bool("force", false, "write into a docker-root a live dockerd uses")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("commit: unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *out == "" {
		return fmt.Errorf("commit: -o DEST is required")
	}
	if (*container == "") == (*upper == "") {
		return fmt.Errorf("commit: give exactly one of --upper DIR and --container ID")
	}
	p, err := compat.Lookup(*profile)
	if err != nil {
		return err
	}
	comp, err := layer.ParseCompression(*compression)
	if err != nil {
		return err
	}
	var lvl *int
	if *level != "" {
		n, err := strconv.Atoi(*level)
		if err != nil {
			return fmt.Errorf("commit: bad --compression-level %q", *level)
		}
		lvl = &n
	}
	// Check the --change lines before any work; they are applied later.
	if err := image.ValidateChanges(changes, p); err != nil {
		return err
	}
	iopts := []image.Option{image.WithAuthor(*author), image.WithComment(*msg), image.WithChanges(changes...)}
	if *created != "" {
		t, err := time.Parse(time.RFC3339Nano, *created)
		if err != nil {
			return fmt.Errorf("commit: bad --created %q (want RFC 3339)", *created)
		}
		iopts = append(iopts, image.WithCreated(t))
	}
	if *createdBy != "" {
		iopts = append(iopts, image.WithCreatedBy(*createdBy))
	}
	dv := p.DockerVersion
	if *dockerVersion != "" {
		dv = *dockerVersion
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
	defer stop()
	counters := &layer.Counters{}
	output := commit.Output{
		Compat: p, Compression: comp, Level: lvl, Counters: counters,
		Options: []export.Option{export.WithDockerRoot(*dockerRoot), export.WithForce(*force)},
	}
	if *container != "" {
		req := commit.ContainerRequest{
			Container: *container, To: *out, Changes: changes, Author: *author, Comment: *msg,
			Pause: *pause, Output: output,
		}
		if set["from"] {
			req.From = *from
		}
		if set["docker-version"] {
			req.DockerVersion = dockerVersion
		}
		if *created != "" {
			req.Created, _ = time.Parse(time.RFC3339Nano, *created)
		}
		done := showProgress(stderr, counters, *quiet)
		id, err := commit.CommitContainer(ctx, req)
		done()
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, id)
		return nil
	}
	src, err := diffSource(*source, *upper, lowers, false, stderr)
	if err != nil {
		return err
	}
	done := showProgress(stderr, counters, *quiet)
	id, err := commit.Commit(ctx, commit.CommitRequest{
		From:    *from,
		Changes: src,
		To:      *out,
		Image:   append(iopts, image.WithDockerVersion(dv)),
		Output:  output,
	})
	done()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, id)
	return nil
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
		for {
			// Drawn at once, then at every tick.
			line := fmt.Sprintf("%d files, %s scanned, %s compressed", c.Files.Load(), mib(c.TarBytes.Load()), mib(c.BlobBytes.Load()))
			if total := c.UploadSize.Load(); total > 0 {
				line += fmt.Sprintf(", %s of %s uploaded", mib(c.Uploaded.Load()), mib(total))
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

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
