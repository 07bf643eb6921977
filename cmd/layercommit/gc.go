package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/layercommit/layercommit/commit"
)

func init() {
	register(command{"gc", "gc [--docker-root DIR] [--state-dir DIR] [--force] [oci:DIR | docker-archive:FILE]...", runGC})
}

// runGC removes what interrupted runs left in the named stores and prints
// each removed path on its own line; leftovers kept because a running
// writer holds them are named on stderr.
func runGC(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("gc", stderr)
	dockerRoot := fs.String("docker-root", "", "Docker data root to clean (none if not given)")
	stateDir := fs.String("state-dir", "", "layercommit state dir to clean (none if not given)")
	force := fs.Bool("force", false, "clean a data root a live dockerd uses (only layercommit's leftovers) or a state dir in use")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	r := commit.GCRequest{
		DockerRoot: *dockerRoot, StateDir: *stateDir, Force: *force,
		Removed: func(p string) { fmt.Fprintln(stdout, p) },
		Kept:    func(p, why string) { fmt.Fprintf(stderr, "layercommit: kept %s: %s\n", p, why) },
	}
	for _, a := range fs.Args() {
		transport, rest, _ := strings.Cut(a, ":")
		switch {
		case transport == "oci" && rest != "":
			dir, _, _ := strings.Cut(rest, ":")
			r.Layouts = append(r.Layouts, dir)
		case transport == "docker-archive" && rest != "":
			file, _, _ := strings.Cut(rest, ":")
			r.Archives = append(r.Archives, file)
		default:
			return fmt.Errorf("gc: cannot clean %q: want oci:DIR or docker-archive:FILE", a)
		}
	}
	if len(r.Layouts)+len(r.Archives) == 0 && r.DockerRoot == "" && r.StateDir == "" {
		return errors.New("gc: nothing named to clean: give oci:DIR, docker-archive:FILE, --docker-root DIR or --state-dir DIR")
	}
	return commit.GC(context.Background(), r)
}
