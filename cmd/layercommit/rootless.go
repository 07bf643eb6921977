package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/layercommit/layercommit/internal/userns"
)

// usernsEnv picks the user namespace mode when --userns is not given.
const usernsEnv = "LAYERCOMMIT_USERNS"

// userNamespace takes the global option --userns=MODE (or --userns MODE)
// off the front of args; without it the mode is $LAYERCOMMIT_USERNS,
// else subids.
func userNamespace(args []string) (userns.Mode, []string, error) {
	v, set := os.Getenv(usernsEnv), false
	if len(args) > 0 {
		if m, ok := strings.CutPrefix(args[0], "--userns="); ok {
			v, args, set = m, args[1:], true
		} else if args[0] == "--userns" {
			if len(args) < 2 {
				return "", nil, fmt.Errorf("--userns needs a mode (subids, single or host)")
			}
			v, args, set = args[1], args[2:], true
		}
	}
	m, err := userns.ParseMode(v)
	if err != nil && !set {
		err = fmt.Errorf("%s: %w", usernsEnv, err)
	}
	return m, args, err
}

// rootless runs the command again inside a user namespace when an
// ordinary user runs it (see internal/userns), unless it needs none
// (help) or the user asked for --userns=host. It returns whether it ran
// the command, and then its exit status.
func rootless(args []string) (bool, int) {
	if !userns.Needed() {
		return false, 0
	}
	mode, rest, err := userNamespace(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "layercommit: %s\n", oneLine(err.Error()))
		return true, 2
	}
	if mode == userns.ModeHost || len(rest) == 0 || rest[0] == "help" || rest[0] == "-h" || rest[0] == "--help" {
		return false, 0
	}
	code, err := userns.Reexec(userns.Config{Mode: mode}, args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "layercommit: %s\n", oneLine(err.Error()))
		return true, 1
	}
	return true, code
}
