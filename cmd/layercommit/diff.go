package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/internal/atomicfile"
)

func init() {
	register(command{"diff", "diff [--compat P] [--source overlay|aufs|naive|walking] [--lower DIR]... [--userxattr] [--fuse] [--xattrs LIST] [--sparse] [-o FILE|-] UPPERDIR", runDiff})
}

func runDiff(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("diff", stderr)
	var lowers strList
	fs.Var(&lowers, "lower", "lower dir, top first (repeatable)")
	out := fs.String("o", "-", "write the tar to FILE (- for stdout)")
	profile := fs.String("compat", compat.Default.Name, "whose bytes to reproduce")
	source := fs.String("source", "", "overlay, aufs, naive or walking (default: walking for --compat containerd, else overlay)")
	userxattr := fs.Bool("userxattr", false, "read user.overlay.* xattrs (userxattr mounts)")
	fuse := fs.Bool("fuse", false, "with --source overlay: UPPERDIR is fuse-overlayfs's (give its --lower dirs), read as the kernel's")
	xattrs := fs.String("xattrs", "", "xattrs to keep: security.capability|all|NAME|PREFIX.*,... (default the profile's)")
	sparse := fs.Bool("sparse", false, "write files with holes as PAX sparse entries")
	fs.Bool("q", false, "no progress display")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("diff: want one UPPERDIR, got %d arguments", fs.NArg())
	}
	p, err := compat.Lookup(*profile)
	if err != nil {
		return err
	}
	opts, err := diff.Options(p, *xattrs, *sparse)
	if err != nil {
		return fmt.Errorf("diff: %w", err)
	}
	kind := *source
	if kind == "" {
		// The profile's engine decides how changes are found: the
		// walking differ compares whole trees, Docker reads the upper dir.
		kind = "overlay"
		if p.WalkingDiff {
			kind = "walking"
		}
	}
	if *fuse && kind != "overlay" {
		return fmt.Errorf("diff: --fuse reads an overlay upper dir (--source overlay), not --source %s", kind)
	}
	src, err := diffSource(kind, fs.Arg(0), lowers, *userxattr, *fuse, stderr)
	if err != nil {
		return err
	}
	return writeDiff(context.Background(), src, append([]diff.Option{diff.WithCompat(p)}, opts...), *out, stdout, stderr)
}

func diffSource(kind, upper string, lowers []string, userxattr, fuse bool, stderr io.Writer) (diff.Source, error) {
	warn := func(format string, args ...any) { fmt.Fprintf(stderr, "layercommit: warning: "+format+"\n", args...) }
	if fi, err := os.Stat(upper); err != nil {
		return nil, fmt.Errorf("reading upper dir: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("upper dir %s is not a directory", upper)
	}
	switch kind {
	case "overlay":
		opts := []diff.OverlayOption{diff.WithLowers(lowers...), diff.WithWarner(warn)}
		if userxattr {
			opts = append(opts, diff.WithUserXattr())
		}
		if fuse {
			opts = append(opts, diff.WithFuse())
		}
		return diff.Overlay(upper, opts...), nil
	case "aufs":
		return diff.Aufs(upper, warn), nil
	case "naive":
		if len(lowers) != 1 {
			return nil, fmt.Errorf("naive diff wants exactly one --lower, got %d", len(lowers))
		}
		return diff.Naive(lowers[0], upper, warn), nil
	case "walking":
		// containerd's walking differ: the merge of the lowers against
		// UPPER over them, both mounted read-only through
		// internal/overlay for the walk (diff.Snapshot).
		if userxattr {
			return nil, fmt.Errorf("--userxattr is not supported by the walking diff (it mounts the snapshot itself, without userxattr)")
		}
		return diff.Snapshot(lowers, upper, warn), nil
	}
	return nil, fmt.Errorf("unknown diff source %q (overlay, aufs, naive or walking)", kind)
}

// writeDiff writes the layer tar to out ("-" for stdout) and prints the
// diffID last: on stdout after a file, on stderr after a stream.
func writeDiff(ctx context.Context, src diff.Source, opts []diff.Option, out string, stdout, stderr io.Writer) error {
	if out == "-" {
		id, _, err := diff.Write(ctx, stdout, src, opts...)
		if err != nil {
			return fmt.Errorf("diff: %w", err)
		}
		fmt.Fprintln(stderr, id)
		return nil
	}
	f, err := atomicfile.Create(out, 0o644)
	if err != nil {
		return err
	}
	defer f.Abort()
	id, _, err := diff.Write(ctx, f, src, opts...)
	if err != nil {
		return fmt.Errorf("diff: %w", err)
	}
	if err := f.Commit(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, id)
	return nil
}
