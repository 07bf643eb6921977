// Command layercommit turns container file-system changes into images
// without a Docker daemon. See ../../README.md and ../shared/CLI.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/layercommit/layercommit/internal/userns"
	"github.com/layercommit/layercommit/sandbox"
)

type command struct {
	name, usage string
	run         func(args []string, stdout, stderr io.Writer) error
}

// registry holds the subcommands; each one's file adds itself in init so
// that commands are added without editing this file.
var registry []command

func register(c command) { registry = append(registry, c) }

func commands() []command {
	cs := append([]command(nil), registry...)
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	return cs
}

func main() {
	// A re-executed copy of this binary is the init of a RUN sandbox:
	// that runs before anything else and never returns.
	sandbox.Main()
	// An ordinary user's command runs again inside a user namespace
	// (internal/userns); the child waiting for its id maps stops here.
	userns.Main()
	if ran, code := rootless(os.Args[1:]); ran {
		os.Exit(code)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	// --userns was used (or is ignored, inside the namespace or as root).
	_, args, err := userNamespace(args)
	if err != nil {
		fmt.Fprintf(stderr, "layercommit: %s\n", oneLine(err.Error()))
		return 2
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		if err := c.run(args[1:], stdout, stderr); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			fmt.Fprintf(stderr, "layercommit: %s\n", oneLine(err.Error()))
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "layercommit: unknown command %q (try layercommit help)\n", args[0])
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: layercommit [--userns=subids|single|host] COMMAND [ARGS]")
	for _, c := range commands() {
		fmt.Fprintf(w, "  layercommit %s\n", c.usage)
	}
}

// oneLine keeps an error to a single line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// strList is a repeatable string flag.
type strList []string

func (s *strList) String() string     { return strings.Join(*s, ",") }
func (s *strList) Set(v string) error { *s = append(*s, v); return nil }

// newFlags makes a flag set that reports errors as values, not by exiting.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("layercommit "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parse parses args and turns flag errors into one-line errors.
func parse(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return err
		}
		return fmt.Errorf("%s: %w", fs.Name(), err)
	}
	return nil
}
