package dockerfile

import (
	"fmt"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// Instruction is one typed Dockerfile instruction. Words are kept as the
// parser gave them; variables are expanded when the instruction is run,
// since their values depend on the stage's ENV and ARG state.
type Instruction interface {
	// Pos is the instruction's first line in the Dockerfile (1-based).
	Pos() int
	// Source is the instruction as written, continuation lines joined
	// (what docker build prints as the step).
	Source() string
	// String renders the parsed instruction for golden files.
	String() string
}

// at carries an instruction's location: its line and its original text.
// Every instruction embeds it; parseNode attaches it once.
type at struct {
	Line     int
	Original string // the line after continuation joining
}

func (a at) Pos() int       { return a.Line }
func (a at) Source() string { return a.Original }

// KeyValue is one ENV or LABEL pair, or an ARG with a default (Value nil
// when the ARG has none). Key and Value are unexpanded words.
type KeyValue struct {
	Key   string
	Value *string
}

func (kv KeyValue) String() string {
	if kv.Value == nil {
		return kv.Key
	}
	return kv.Key + "=" + *kv.Value
}

// Heredoc is a here-document attached to RUN or COPY/ADD.
type Heredoc struct {
	Name    string
	Content string
	Expand  bool // unquoted terminator: variables are expanded
	Chomp   bool // <<- : leading tabs are stripped
}

// HeredocSource reports whether a COPY or ADD source word is a heredoc
// marker (<<EOF, <<-EOF, <<"EOF", <<'EOF') and returns the heredoc's
// name, the key of CopyInstr.Heredocs.
func HeredocSource(word string) (string, bool) {
	h := parser.MustParseHeredoc(word)
	if h == nil {
		return "", false
	}
	return h.Name, true
}

// CommandLine is the argument of RUN, CMD and ENTRYPOINT: a JSON (exec)
// form run as is, or a shell form run by the stage's SHELL.
type CommandLine struct {
	Args      []string // exec form: the argv; shell form: one string
	ShellForm bool
}

func (c CommandLine) String() string {
	if c.ShellForm {
		return strings.Join(c.Args, " ")
	}
	return fmt.Sprintf("%q", c.Args)
}

// FromInstr is FROM [--platform=P] IMAGE [AS NAME].
type FromInstr struct {
	at
	Image    string
	Name     string // lower-cased stage name, "" if none
	Platform string
}

func (i *FromInstr) String() string {
	s := "FROM "
	if i.Platform != "" {
		s += "--platform=" + i.Platform + " "
	}
	s += i.Image
	if i.Name != "" {
		s += " AS " + i.Name
	}
	return s
}

// ArgInstr is ARG NAME[=DEFAULT]...
type ArgInstr struct {
	at
	Args []KeyValue
}

func (i *ArgInstr) String() string { return "ARG " + kvs(i.Args) }

// RunInstr is RUN.
type RunInstr struct {
	at
	Cmd      CommandLine
	Heredocs []Heredoc
	Network  string // --network: "", "default", "none" or "host"
	Security string // --security: "", "sandbox" or "insecure"
	// Mounts are the --mount values as written; ParseMount reads each
	// once the stage's variables are known (Parse has checked what it
	// can without them).
	Mounts []string
}

// SoleHeredoc returns the heredoc when the shell-form command line is
// nothing but its marker (RUN <<EOF): BuildKit then runs the body itself,
// as a script when it starts with "#!", else as the shell's command
// string, unexpanded in both cases. Other heredocs are handed to the
// shell with the command line, which reads them.
func (i *RunInstr) SoleHeredoc() (Heredoc, bool) {
	if !i.Cmd.ShellForm || len(i.Heredocs) != 1 || len(i.Cmd.Args) != 1 || parser.MustParseHeredoc(i.Cmd.Args[0]) == nil {
		return Heredoc{}, false
	}
	return i.Heredocs[0], true
}

func (i *RunInstr) String() string {
	s := "RUN "
	if i.Network != "" {
		s += "--network=" + i.Network + " "
	}
	if i.Security != "" {
		s += "--security=" + i.Security + " "
	}
	for _, m := range i.Mounts {
		s += "--mount=" + m + " "
	}
	s += i.Cmd.String()
	for _, h := range i.Heredocs {
		s += fmt.Sprintf(" <<%s(expand=%t,chomp=%t)%q", h.Name, h.Expand, h.Chomp, h.Content)
	}
	return s
}

// CopyInstr is COPY or ADD.
type CopyInstr struct {
	at
	Add      bool
	Sources  []string // unexpanded; heredoc sources are "<<NAME"
	Dest     string
	From     string
	Chown    string
	Chmod    string
	Checksum string
	Link     bool
	Parents  bool     // COPY --parents: keep the sources' directories (a "/./" pivots)
	Excludes []string // --exclude patterns, unexpanded as BuildKit keeps them
	// Unpack and KeepGitDir are ADD's --unpack and --keep-git-dir; nil
	// when not given (BuildKit's defaults then apply).
	Unpack     *bool
	KeepGitDir *bool
	Heredocs   []Heredoc
}

func (i *CopyInstr) Name() string {
	if i.Add {
		return "ADD"
	}
	return "COPY"
}

func (i *CopyInstr) String() string {
	s := i.Name() + " "
	for _, f := range [][2]string{{"from", i.From}, {"chown", i.Chown}, {"chmod", i.Chmod}, {"checksum", i.Checksum}} {
		if f[1] != "" {
			s += "--" + f[0] + "=" + f[1] + " "
		}
	}
	for _, e := range i.Excludes {
		s += "--exclude=" + e + " "
	}
	if i.Link {
		s += "--link "
	}
	if i.Parents {
		s += "--parents "
	}
	for _, f := range []struct {
		name string
		v    *bool
	}{{"unpack", i.Unpack}, {"keep-git-dir", i.KeepGitDir}} {
		if f.v != nil {
			s += fmt.Sprintf("--%s=%t ", f.name, *f.v)
		}
	}
	s += fmt.Sprintf("%q %q", i.Sources, i.Dest)
	for _, h := range i.Heredocs {
		s += fmt.Sprintf(" <<%s(expand=%t,chomp=%t)%q", h.Name, h.Expand, h.Chomp, h.Content)
	}
	return s
}

// EnvInstr is ENV.
type EnvInstr struct {
	at
	Pairs []KeyValue
}

func (i *EnvInstr) String() string { return "ENV " + kvs(i.Pairs) }

// LabelInstr is LABEL.
type LabelInstr struct {
	at
	Pairs []KeyValue
}

func (i *LabelInstr) String() string { return "LABEL " + kvs(i.Pairs) }

// UserInstr is USER.
type UserInstr struct {
	at
	User string
}

func (i *UserInstr) String() string { return "USER " + i.User }

// WorkdirInstr is WORKDIR.
type WorkdirInstr struct {
	at
	Path string
}

func (i *WorkdirInstr) String() string { return "WORKDIR " + i.Path }

// ExposeInstr is EXPOSE.
type ExposeInstr struct {
	at
	Ports []string
}

func (i *ExposeInstr) String() string { return "EXPOSE " + strings.Join(i.Ports, " ") }

// VolumeInstr is VOLUME.
type VolumeInstr struct {
	at
	Paths []string
}

func (i *VolumeInstr) String() string { return fmt.Sprintf("VOLUME %q", i.Paths) }

// CmdInstr is CMD.
type CmdInstr struct {
	at
	Cmd CommandLine
}

func (i *CmdInstr) String() string { return "CMD " + i.Cmd.String() }

// EntrypointInstr is ENTRYPOINT.
type EntrypointInstr struct {
	at
	Cmd CommandLine
}

func (i *EntrypointInstr) String() string { return "ENTRYPOINT " + i.Cmd.String() }

// ShellInstr is SHELL (JSON form only).
type ShellInstr struct {
	at
	Shell []string
}

func (i *ShellInstr) String() string { return fmt.Sprintf("SHELL %q", i.Shell) }

// StopSignalInstr is STOPSIGNAL.
type StopSignalInstr struct {
	at
	Signal string
}

func (i *StopSignalInstr) String() string { return "STOPSIGNAL " + i.Signal }

// HealthcheckInstr is HEALTHCHECK NONE or HEALTHCHECK [flags] CMD ...
type HealthcheckInstr struct {
	at
	Health v1.HealthConfig
	// StartInterval is --start-interval (BuildKit's
	// Healthcheck.StartInterval), which v1.HealthConfig has no field
	// for: see Dispatcher.StartInterval.
	StartInterval time.Duration
}

func (i *HealthcheckInstr) String() string {
	h := i.Health
	si := ""
	if i.StartInterval != 0 {
		si = " start-interval=" + i.StartInterval.String()
	}
	return fmt.Sprintf("HEALTHCHECK %q interval=%s timeout=%s start-period=%s%s retries=%d",
		h.Test, h.Interval, h.Timeout, h.StartPeriod, si, h.Retries)
}

// OnbuildInstr is ONBUILD: Expression is recorded in the image and run
// when the image is used as a base.
type OnbuildInstr struct {
	at
	Expression string
}

func (i *OnbuildInstr) String() string { return "ONBUILD " + i.Expression }

// MaintainerInstr is MAINTAINER (the image author).
type MaintainerInstr struct {
	at
	Name string
}

func (i *MaintainerInstr) String() string { return "MAINTAINER " + i.Name }

func kvs(p []KeyValue) string {
	var s []string
	for _, kv := range p {
		s = append(s, kv.String())
	}
	return strings.Join(s, " ")
}

// Stage is one FROM and the instructions up to the next FROM.
type Stage struct {
	Index        int
	From         *FromInstr
	Instructions []Instruction
}

// Dockerfile is a parsed Dockerfile: the ARGs before the first FROM and
// the stages, in order.
type Dockerfile struct {
	MetaArgs    []*ArgInstr
	Stages      []*Stage
	EscapeToken rune
	Warnings    []string
	// Syntax is the `# syntax=` frontend (one naming the built-in
	// docker/dockerfile:1, or ""); Check the `# check=` lint options as
	// written (validated; the lint rules are not run).
	Syntax, Check string
}

// Dump renders the parsed file one instruction a line; the parser's golden
// files hold it.
func (d *Dockerfile) Dump() string {
	var b strings.Builder
	if d.Syntax != "" {
		fmt.Fprintf(&b, "syntax=%s\n", d.Syntax)
	}
	if d.Check != "" {
		fmt.Fprintf(&b, "check=%s\n", d.Check)
	}
	for _, a := range d.MetaArgs {
		fmt.Fprintf(&b, "%d: %s\n", a.Line, a)
	}
	for _, s := range d.Stages {
		fmt.Fprintf(&b, "stage %d\n%d: %s\n", s.Index, s.From.Line, s.From)
		for _, in := range s.Instructions {
			fmt.Fprintf(&b, "%d:   %s\n", in.Pos(), in)
		}
	}
	return b.String()
}
