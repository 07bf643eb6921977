package overlay

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// FuseProgram is the fuse-overlayfs binary Mount runs for Options.Fuse
// (Debian package fuse-overlayfs), looked up on PATH.
const FuseProgram = "fuse-overlayfs"

// ErrNoFuse is wrapped when fuse-overlayfs is not installed.
var ErrNoFuse = errors.New("fuse-overlayfs is not installed (Debian package fuse-overlayfs)")

// mountFuse mounts o at target with fuse-overlayfs, which forks its
// daemon once the mount is made: when it returns nil the overlay is
// there. fuse-overlayfs has no redirects, metacopy or index, so the
// pinned options have no counterpart; its upper dir marks whiteouts
// and opaque dirs its own ways (char 0/0 or .wh.NAME files, an xattr
// and a .wh..wh..opq file, new dirs always opaque), which diff reads
// WithFuse. Run as root it adds allow_other, suid and
// default_permissions itself, so the RUN command's users reach the
// mount and the kernel checks their permissions.
func mountFuse(target string, o Options) error {
	prog, err := exec.LookPath(FuseProgram)
	if err != nil {
		return ErrNoFuse
	}
	for _, d := range append(append([]string{o.Upper, o.Work}, o.Lowers...), target) {
		// fuse-overlayfs splits lowerdir at ':' and its options at ','
		// and knows no escapes.
		if strings.ContainsAny(d, ":,") {
			return fmt.Errorf("fuse-overlayfs cannot take the dir %q (a ':' or ',' in it)", d)
		}
	}
	opts := "lowerdir=" + strings.Join(o.Lowers, ":")
	if o.Upper != "" {
		opts += ",upperdir=" + o.Upper + ",workdir=" + o.Work
	}
	if o.ReadOnly {
		opts += ",ro"
	}
	if o.Volatile && o.Upper != "" {
		// fuse-overlayfs's volatile: fsync calls are not passed on.
		opts += ",fsync=0"
	}
	var out bytes.Buffer
	cmd := exec.Command(prog, "-o", opts, target)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("fuse-overlayfs (%d lowers): %w: %s", len(o.Lowers), err, fuseOutput(out.String()))
	}
	return nil
}

// fuseOutput is fuse-overlayfs's output in one line, without the notice
// it prints for the lazytime flag it adds itself.
func fuseOutput(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && l != "unknown argument ignored: lazytime" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}
