package dockerfile

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"

	mode "github.com/tonistiigi/dchapes-mode"
)

// Chmod is a COPY or ADD --chmod value: BuildKit's octal mode (at most
// 07777) or a symbolic one (u+x,go=rX), applied to every file and
// directory the instruction writes.
type Chmod struct {
	Octal *fs.FileMode // octal: permission bits plus ModeSetuid/ModeSetgid/ModeSticky
	set   *mode.Set    // symbolic
}

// ParseChmod reads a --chmod value after variable expansion with
// BuildKit's rules (dockerfile2llb's dispatchCopy): a number that parses
// as octal is the mode (refused above 07777), anything else is read by
// github.com/tonistiigi/dchapes-mode, the parser BuildKit uses, with a
// zero umask as BuildKit's copy applies it; a value that looks numeric but
// is not octal gets BuildKit's octal message.
func ParseChmod(s string) (*Chmod, error) {
	bad := fmt.Errorf("invalid chmod parameter: '%v'. it should be octal string and between 0 and 07777", s)
	if v, err := strconv.ParseUint(s, 8, 32); err == nil {
		if v > 0o7777 {
			return nil, bad
		}
		m := fs.FileMode(v) & fs.ModePerm
		for bit, flag := range map[uint64]fs.FileMode{0o4000: fs.ModeSetuid, 0o2000: fs.ModeSetgid, 0o1000: fs.ModeSticky} {
			if v&bit != 0 {
				m |= flag
			}
		}
		return &Chmod{Octal: &m}, nil
	}
	set, err := mode.ParseWithUmask(s, 0)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) {
			return nil, bad
		}
		return nil, fmt.Errorf("invalid chmod parameter %q: %w", s, err)
	}
	return &Chmod{set: &set}, nil
}

// Apply gives the mode a file or directory of mode m (its type bits
// included: X and directories) gets.
func (c *Chmod) Apply(m fs.FileMode) fs.FileMode {
	if c.Octal != nil {
		return *c.Octal
	}
	return c.set.Apply(m) & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}
