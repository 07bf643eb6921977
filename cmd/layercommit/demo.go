package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/diff"
)

func init() { register(command{"demo", "demo [--compat P] [DIR]", runDemo}) }

// runDemo prepares a real overlay upper dir (demoUpper) and diffs it,
// listing the changes and the diffID.
func runDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	profile := fs.String("compat", compat.Default.Name, "whose bytes to reproduce")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	p, err := compat.Lookup(*profile)
	if err != nil {
		return err
	}
	dir := fs.Arg(0)
	if dir == "" {
		if dir, err = os.MkdirTemp("", "layercommit-demo-"); err != nil {
			return err
		}
	}
	upper, err := demoUpper(dir)
	if err != nil {
		return fmt.Errorf("preparing the demo overlay: %w", err)
	}
	fmt.Fprintf(stdout, "upper dir: %s\n", upper)
	out := filepath.Join(dir, "layer.tar")
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	id, size, err := diff.Write(context.Background(), f, diff.Overlay(upper), diff.WithCompat(p),
		diff.WithProgress(func(c diff.Change) {
			suffix := ""
			if c.Opaque {
				suffix = " (opaque)"
			}
			fmt.Fprintf(stdout, "  %-6s %q%s\n", c.Kind, c.Path, suffix)
		}))
	if err != nil {
		return fmt.Errorf("diff: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "layer tar: %s (%d bytes)\n%s\n", out, size, id)
	return nil
}
