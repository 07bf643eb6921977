package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	units "github.com/docker/go-units"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/commit"
	"github.com/layercommit/layercommit/export"
	"github.com/layercommit/layercommit/internal/atomicfile"
	"github.com/layercommit/layercommit/statedir"
)

// The commands over the local image store (export.Store, local:).
func init() {
	register(command{"images", "images [--state-dir DIR] [--json]", runImages})
	register(command{"tag", "tag [--state-dir DIR] SRC NAME", runTag})
	register(command{"rmi", "rmi [--state-dir DIR] NAME|ID...", runRmi})
	register(command{"push", "push [--state-dir DIR] NAME|ID DEST", runPush})
	register(command{"pull", "pull [--state-dir DIR] REF [NAME]", runPull})
}

func storeFlags(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := newFlags(name, stderr)
	return fs, fs.String("state-dir", statedir.Default, "the state dir whose image store to use")
}

// runImages lists the store's images, newest first, as docker images
// shows them (familiar names: "app", not docker.io/library/app); --json
// gives the full names.
func runImages(args []string, stdout, stderr io.Writer) error {
	fs, stateDir := storeFlags("images", stderr)
	asJSON := fs.Bool("json", false, "print a JSON array")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("images: unexpected argument %q", fs.Arg(0))
	}
	imgs, err := export.OpenStore(*stateDir).Images()
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	if *asJSON {
		b, err := json.MarshalIndent(imgs, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
	for _, im := range imgs {
		row := func(repo, tag string) {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", repo, tag, im.ID.Hex[:12],
				units.HumanDuration(time.Since(im.Created))+" ago", units.HumanSizeWithPrecision(float64(im.Size), 3))
		}
		if len(im.Names) == 0 {
			row("<none>", "<none>")
		}
		for _, n := range im.Names {
			f := export.FamiliarName(n)
			i := strings.LastIndex(f, ":")
			row(f[:i], f[i+1:])
		}
	}
	return tw.Flush()
}

func runTag(args []string, stdout, stderr io.Writer) error {
	fs, stateDir := storeFlags("tag", stderr)
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("tag: want SRC and NAME, got %d arguments", fs.NArg())
	}
	if err := export.OpenStore(*stateDir).Tag(fs.Arg(0), fs.Arg(1)); err != nil {
		return fmt.Errorf("tag: %w", err)
	}
	return nil
}

func runRmi(args []string, stdout, stderr io.Writer) error {
	fs, stateDir := storeFlags("rmi", stderr)
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("rmi: want at least one NAME or ID")
	}
	lines, err := export.OpenStore(*stateDir).Remove(fs.Args()...)
	for _, l := range lines {
		fmt.Fprintln(stdout, l)
	}
	if err != nil {
		return fmt.Errorf("rmi: %w", err)
	}
	return nil
}

// runPush copies a stored image to DEST (a plain name is a registry
// reference) and prints its ID.
func runPush(args []string, stdout, stderr io.Writer) error {
	fs, stateDir := storeFlags("push", stderr)
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("push: want NAME and DEST, got %d arguments", fs.NArg())
	}
	dest := fs.Arg(1)
	if _, _, err := export.Parse(dest); err != nil {
		dest = "docker://" + dest
	}
	return copyStore(stdout, "local:"+fs.Arg(0), dest, *stateDir)
}

// runPull copies REF (a plain name is pulled from its registry) into the
// store under NAME (default REF when it is a plain name, else untagged).
func runPull(args []string, stdout, stderr io.Writer) error {
	fs, stateDir := storeFlags("pull", stderr)
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 && fs.NArg() != 2 {
		return fmt.Errorf("pull: want REF [NAME], got %d arguments", fs.NArg())
	}
	src, name := fs.Arg(0), fs.Arg(1)
	if _, _, err := export.Parse(src); err != nil {
		if name == "" {
			name = src
		}
		src = "docker://" + src
	}
	if name != "" {
		if _, err := export.NormalizeName(name); err != nil {
			return fmt.Errorf("pull: %w", err)
		}
	}
	return copyStore(stdout, src, "local:"+name, *stateDir)
}

func copyStore(stdout io.Writer, src, dest, stateDir string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
	defer stop()
	id, err := commit.Copy(ctx, src, dest, export.WithStateDir(stateDir))
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, id)
	return nil
}

// keyValues parses repeated K=V flags (--label).
func keyValues(flag string, vals []string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range vals {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("bad --%s %q (want K=V)", flag, kv)
		}
		m[k] = v
	}
	return m, nil
}

// writeResultFiles writes --iidfile (the ID, no newline, as docker) and
// --metadata-file (indented JSON) when named: both are written to temp
// files first and renamed only when both are complete.
func writeResultFiles(iidFile string, id v1.Hash, metaFile string, meta map[string]any) error {
	var files []*atomicfile.File
	defer func() {
		for _, f := range files {
			f.Abort()
		}
	}()
	add := func(path string, b []byte) error {
		if path == "" {
			return nil
		}
		f, err := atomicfile.Create(path, 0o644)
		if err != nil {
			return err
		}
		files = append(files, f)
		_, err = f.Write(b)
		return err
	}
	if err := add(iidFile, []byte(id.String())); err != nil {
		return fmt.Errorf("writing --iidfile: %w", err)
	}
	if metaFile != "" {
		b, err := json.MarshalIndent(meta, "", "  ")
		if err != nil {
			return err
		}
		if err := add(metaFile, append(b, '\n')); err != nil {
			return fmt.Errorf("writing --metadata-file: %w", err)
		}
	}
	for _, f := range files {
		if err := f.Commit(); err != nil {
			return err
		}
	}
	files = nil
	return nil
}

// storeDestination is a commit's destination: -o as given, else the
// store under the first -t name (untagged with none). -o and -t together
// are refused: the names live in the store.
func storeDestination(out string, tags []string) (string, error) {
	switch {
	case out != "" && len(tags) > 0:
		return "", errors.New("give -o DEST or -t NAME, not both")
	case out != "":
		return out, nil
	case len(tags) == 0:
		return "local:", nil
	}
	for _, t := range tags {
		if _, err := export.NormalizeName(t); err != nil {
			return "", fmt.Errorf("bad -t: %w", err)
		}
	}
	return "local:" + tags[0], nil
}

// tagMore gives the stored image id its further -t names and writes the
// --iidfile.
func tagMore(stateDir string, tags []string, iidFile string, id v1.Hash) error {
	for _, t := range tags[min(1, len(tags)):] {
		if err := export.OpenStore(stateDir).Tag(id.String(), t); err != nil {
			return fmt.Errorf("tagging %s: %w", t, err)
		}
	}
	return writeResultFiles(iidFile, id, "", nil)
}
