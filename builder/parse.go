package builder

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// Limits on what Parse accepts, beyond the parser's own 64 KiB line limit.
const (
	MaxDockerfileSize = 16 << 20
	MaxInstructions   = 100_000
)

// LineError is an error at a line of the Dockerfile. Its text is
// "Dockerfile:LINE: MSG".
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("Dockerfile:%d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

func lineErr(line int, format string, args ...any) error {
	return &LineError{Line: line, Err: fmt.Errorf(format, args...)}
}

// stageName is what BuildKit allows as a stage name.
var stageName = regexp.MustCompile(`^[a-z][a-z0-9-_.]*$`)

// Parse reads a Dockerfile and returns its typed instructions. Syntax is
// checked here (instruction names, argument counts, flags, JSON forms,
// heredocs, stage names); variables are expanded only when building.
func Parse(r io.Reader) (*Dockerfile, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxDockerfileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading Dockerfile: %w", err)
	}
	if len(data) > MaxDockerfileSize {
		return nil, fmt.Errorf("Dockerfile is larger than %d bytes", MaxDockerfileSize)
	}
	res, err := parser.Parse(strings.NewReader(string(data)))
	if err != nil {
		line := 1
		var le *parser.LocationError
		if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 {
			line = le.Locations[0][0].Start.Line
			// Directive errors are located by the parser's 0-based
			// line counter; every other error by a 1-based one.
			if strings.Contains(err.Error(), "escape") {
				line++
			}
			line = max(line, 1)
		}
		return nil, &LineError{Line: line, Err: errors.New(parserMessage(err))}
	}
	if len(res.AST.Children) > MaxInstructions {
		return nil, fmt.Errorf("Dockerfile has more than %d instructions", MaxInstructions)
	}
	df := &Dockerfile{EscapeToken: res.EscapeToken}
	for _, w := range res.Warnings {
		line := 0
		if w.Location != nil {
			line = w.Location.Start.Line
		}
		df.Warnings = append(df.Warnings, fmt.Sprintf("Dockerfile:%d: %s", line, w.Short))
	}
	var stage *Stage
	for _, n := range res.AST.Children {
		in, err := parseInstruction(n, false)
		if err != nil {
			return nil, err
		}
		switch in := in.(type) {
		case *FromInstr:
			stage = &Stage{Index: len(df.Stages), From: in}
			df.Stages = append(df.Stages, stage)
		case *ArgInstr:
			if stage == nil {
				df.MetaArgs = append(df.MetaArgs, in)
			} else {
				stage.Instructions = append(stage.Instructions, in)
			}
		default:
			if stage == nil {
				return nil, lineErr(n.StartLine, "no build stage in current context")
			}
			stage.Instructions = append(stage.Instructions, in)
		}
	}
	if len(df.Stages) == 0 {
		line := 1
		if len(res.AST.Children) > 0 {
			line = res.AST.Children[0].StartLine
		}
		return nil, lineErr(line, "no build stage in current context")
	}
	seen := map[string]int{}
	for _, s := range df.Stages {
		if s.From.Name == "" {
			continue
		}
		if prev, dup := seen[s.From.Name]; dup {
			return nil, lineErr(s.From.Line, "duplicate stage name %q, first defined on line %d", s.From.Name, prev)
		}
		seen[s.From.Name] = s.From.Line
	}
	return df, nil
}

// parserMessage drops the stack the parser's errors may carry.
func parserMessage(err error) string {
	var le *parser.LocationError
	if errors.As(err, &le) && le.Unwrap() != nil {
		err = le.Unwrap()
	}
	return strings.SplitN(err.Error(), "\n", 2)[0]
}

// words lists a node's argument chain.
func words(n *parser.Node) []string {
	var w []string
	for x := n.Next; x != nil; x = x.Next {
		w = append(w, x.Value)
	}
	return w
}

// flagSet parses an instruction's --flags against the allowed names; bool
// flags may be given without a value.
type flagSet struct {
	vals map[string]string
	set  map[string]bool
}

func parseFlags(n *parser.Node, name string, allowed ...string) (*flagSet, error) {
	fs := &flagSet{vals: map[string]string{}, set: map[string]bool{}}
	ok := map[string]bool{}
	for _, a := range allowed {
		ok[a] = true
	}
	for _, f := range n.Flags {
		if !strings.HasPrefix(f, "--") {
			return nil, lineErr(n.StartLine, "%s: bad flag %q", name, f)
		}
		k, v, hasVal := strings.Cut(f[2:], "=")
		if !ok[k] {
			return nil, lineErr(n.StartLine, "unknown flag: --%s", k)
		}
		if fs.set[k] && k != "mount" {
			return nil, lineErr(n.StartLine, "duplicate flag specified: --%s", k)
		}
		if !hasVal {
			v = "true"
		}
		fs.vals[k], fs.set[k] = v, true
	}
	return fs, nil
}

func (fs *flagSet) get(k string) string { return fs.vals[k] }

func parseInstruction(n *parser.Node, inOnbuild bool) (Instruction, error) {
	a := at{Line: n.StartLine, Original: n.Original}
	args := words(n)
	name := strings.ToUpper(n.Value)
	noFlags := func() error {
		if len(n.Flags) > 0 {
			_, err := parseFlags(n, name)
			return err
		}
		return nil
	}
	n.Value = strings.ToLower(n.Value)
	switch n.Value {
	case "from":
		fs, err := parseFlags(n, name, "platform")
		if err != nil {
			return nil, err
		}
		if inOnbuild {
			return nil, lineErr(a.Line, "FROM isn't allowed as an ONBUILD trigger")
		}
		in := &FromInstr{at: a, Platform: fs.get("platform")}
		switch {
		case len(args) == 1:
		case len(args) == 3 && strings.EqualFold(args[1], "as"):
			in.Name = strings.ToLower(args[2])
			if !stageName.MatchString(in.Name) {
				return nil, lineErr(a.Line, "invalid name for build stage: %q, name can't start with a number or contain symbols", args[2])
			}
		default:
			return nil, lineErr(a.Line, "FROM requires either one or three arguments")
		}
		in.Image = args[0]
		return in, nil
	case "arg":
		if err := noFlags(); err != nil {
			return nil, err
		}
		if len(args) == 0 {
			return nil, lineErr(a.Line, "ARG requires at least one argument")
		}
		in := &ArgInstr{at: a}
		for _, w := range args {
			k, v, hasVal := strings.Cut(w, "=")
			if k == "" {
				return nil, lineErr(a.Line, "ARG names can not be blank")
			}
			kv := KeyValue{Key: k}
			if hasVal {
				kv.Value = &v
			}
			in.Args = append(in.Args, kv)
		}
		return in, nil
	case "run":
		fs, err := parseFlags(n, name, "network", "mount", "security")
		if err != nil {
			return nil, err
		}
		if fs.set["mount"] {
			return nil, lineErr(a.Line, "RUN --mount is not supported")
		}
		if fs.set["security"] && fs.get("security") != "sandbox" {
			return nil, lineErr(a.Line, "RUN --security=%s is not supported", fs.get("security"))
		}
		switch fs.get("network") {
		case "", "default", "none", "host":
		default:
			return nil, lineErr(a.Line, "RUN --network=%s: want default, none or host", fs.get("network"))
		}
		cl, err := commandLine(n, name, true)
		if err != nil {
			return nil, err
		}
		return &RunInstr{at: a, Cmd: cl, Heredocs: heredocs(n), Network: fs.get("network")}, nil
	case "cmd", "entrypoint":
		if err := noFlags(); err != nil {
			return nil, err
		}
		cl, err := commandLine(n, name, false)
		if err != nil {
			return nil, err
		}
		if n.Value == "cmd" {
			return &CmdInstr{at: a, Cmd: cl}, nil
		}
		return &EntrypointInstr{at: a, Cmd: cl}, nil
	case "shell":
		if err := noFlags(); err != nil {
			return nil, err
		}
		if !n.Attributes["json"] {
			return nil, lineErr(a.Line, "SHELL requires the arguments to be in JSON form")
		}
		if len(args) == 0 {
			return nil, lineErr(a.Line, "SHELL requires at least one argument")
		}
		return &ShellInstr{at: a, Shell: args}, nil
	case "copy", "add":
		allowed := []string{"from", "chown", "chmod", "link"}
		if n.Value == "add" {
			allowed = []string{"chown", "chmod", "link", "checksum", "keep-git-dir"}
		}
		fs, err := parseFlags(n, name, allowed...)
		if err != nil {
			return nil, err
		}
		if fs.set["keep-git-dir"] {
			return nil, lineErr(a.Line, "ADD --keep-git-dir is not supported (no git sources)")
		}
		if len(args) < 2 {
			return nil, lineErr(a.Line, "%s requires at least two arguments, but only one was provided. Destination could not be determined", name)
		}
		in := &CopyInstr{at: a, Add: n.Value == "add", Sources: args[:len(args)-1], Dest: args[len(args)-1],
			From: fs.get("from"), Chown: fs.get("chown"), Chmod: fs.get("chmod"), Checksum: fs.get("checksum"),
			Link: fs.set["link"]}
		if fs.set["from"] && in.From == "" {
			return nil, lineErr(a.Line, "%s --from requires a value", name)
		}
		if strings.HasPrefix(in.Dest, "<<") && !n.Attributes["json"] {
			return nil, lineErr(a.Line, "%s cannot accept a heredoc as a destination", name)
		}
		if in.Chmod != "" {
			if _, err := strconv.ParseUint(in.Chmod, 8, 32); err != nil || len(in.Chmod) > 4 {
				return nil, lineErr(a.Line, "invalid chmod parameter: %q (want octal, e.g. 0755)", in.Chmod)
			}
		}
		in.Heredocs = heredocs(n)
		return in, nil
	case "env", "label":
		if err := noFlags(); err != nil {
			return nil, err
		}
		if n.Next == nil {
			return nil, lineErr(a.Line, "%s requires at least one argument", name)
		}
		var pairs []KeyValue
		for x := n.Next; x != nil; {
			if x.Next == nil {
				return nil, lineErr(a.Line, "%s: bad key-value pair", name)
			}
			v := x.Next.Value
			if x.Value == "" {
				return nil, lineErr(a.Line, "%s names can not be blank", name)
			}
			pairs = append(pairs, KeyValue{Key: x.Value, Value: &v})
			x = x.Next.Next
			if x != nil {
				x = x.Next // skip the separator node
			}
		}
		if n.Value == "env" {
			return &EnvInstr{at: a, Pairs: pairs}, nil
		}
		return &LabelInstr{at: a, Pairs: pairs}, nil
	case "user", "workdir", "stopsignal", "maintainer":
		if err := noFlags(); err != nil {
			return nil, err
		}
		if len(args) != 1 {
			return nil, lineErr(a.Line, "%s requires exactly one argument", name)
		}
		if n.Value == "workdir" && len(strings.Fields(args[0])) > 1 && !strings.ContainsAny(args[0], `"'\`) {
			return nil, lineErr(a.Line, "WORKDIR requires exactly one argument")
		}
		switch n.Value {
		case "user":
			return &UserInstr{at: a, User: args[0]}, nil
		case "workdir":
			return &WorkdirInstr{at: a, Path: args[0]}, nil
		case "stopsignal":
			return &StopSignalInstr{at: a, Signal: args[0]}, nil
		}
		return &MaintainerInstr{at: a, Name: args[0]}, nil
	case "expose":
		if err := noFlags(); err != nil {
			return nil, err
		}
		if len(args) == 0 {
			return nil, lineErr(a.Line, "EXPOSE requires at least one argument")
		}
		return &ExposeInstr{at: a, Ports: args}, nil
	case "volume":
		if err := noFlags(); err != nil {
			return nil, err
		}
		if len(args) == 0 {
			return nil, lineErr(a.Line, "VOLUME requires at least one argument")
		}
		for _, p := range args {
			if strings.TrimSpace(p) == "" {
				return nil, lineErr(a.Line, "VOLUME specified can not be an empty string")
			}
		}
		return &VolumeInstr{at: a, Paths: args}, nil
	case "healthcheck":
		return parseHealthcheck(n, a)
	case "onbuild":
		if err := noFlags(); err != nil {
			return nil, err
		}
		if n.Next == nil || len(n.Next.Children) == 0 {
			return nil, lineErr(a.Line, "ONBUILD requires at least one argument")
		}
		child := n.Next.Children[0]
		switch strings.ToLower(child.Value) {
		case "onbuild":
			return nil, lineErr(a.Line, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
		case "from", "maintainer":
			return nil, lineErr(a.Line, "%s isn't allowed as an ONBUILD trigger", strings.ToUpper(child.Value))
		}
		child.StartLine = n.StartLine
		if _, err := parseInstruction(child, true); err != nil {
			return nil, err
		}
		expr := regexp.MustCompile(`(?i)^\s*ONBUILD\s*`).ReplaceAllString(n.Original, "")
		return &OnbuildInstr{at: a, Expression: expr}, nil
	}
	return nil, lineErr(a.Line, "unknown instruction: %s", strings.ToUpper(n.Value))
}

func commandLine(n *parser.Node, name string, needArgs bool) (CommandLine, error) {
	args := words(n)
	if n.Attributes["json"] {
		if needArgs && len(args) == 0 {
			return CommandLine{}, lineErr(n.StartLine, "%s requires at least one argument", name)
		}
		return CommandLine{Args: args}, nil
	}
	if len(args) == 0 {
		if needArgs {
			return CommandLine{}, lineErr(n.StartLine, "%s requires at least one argument", name)
		}
		return CommandLine{ShellForm: true}, nil
	}
	return CommandLine{Args: args, ShellForm: true}, nil
}

func heredocs(n *parser.Node) []Heredoc {
	var hs []Heredoc
	for _, h := range n.Heredocs {
		c := h.Content
		if h.Chomp {
			c = parser.ChompHeredocContent(c)
		}
		hs = append(hs, Heredoc{Name: h.Name, Content: c, Expand: h.Expand, Chomp: h.Chomp})
	}
	return hs
}

func parseHealthcheck(n *parser.Node, a at) (Instruction, error) {
	fs, err := parseFlags(n, "HEALTHCHECK", "interval", "timeout", "start-period", "retries")
	if err != nil {
		return nil, err
	}
	if n.Next == nil {
		return nil, lineErr(a.Line, "HEALTHCHECK requires an argument")
	}
	typ := strings.ToUpper(n.Next.Value)
	in := &HealthcheckInstr{at: a}
	switch typ {
	case "NONE":
		if n.Next.Next != nil {
			return nil, lineErr(a.Line, "HEALTHCHECK NONE takes no arguments")
		}
		if len(n.Flags) > 0 {
			return nil, lineErr(a.Line, "HEALTHCHECK NONE takes no flags")
		}
		in.Health.Test = []string{"NONE"}
		return in, nil
	case "CMD":
	default:
		return nil, lineErr(a.Line, "Unknown type %q in HEALTHCHECK (try CMD)", typ)
	}
	var cmd []string
	for x := n.Next.Next; x != nil; x = x.Next {
		cmd = append(cmd, x.Value)
	}
	if len(cmd) == 0 {
		return nil, lineErr(a.Line, "Missing command after HEALTHCHECK CMD")
	}
	if n.Attributes["json"] {
		in.Health.Test = append([]string{"CMD"}, cmd...)
	} else {
		in.Health.Test = []string{"CMD-SHELL", strings.Join(cmd, " ")}
	}
	for _, d := range []struct {
		flag string
		dst  *time.Duration
	}{{"interval", &in.Health.Interval}, {"timeout", &in.Health.Timeout}, {"start-period", &in.Health.StartPeriod}} {
		v := fs.get(d.flag)
		if v == "" {
			continue
		}
		dur, err := time.ParseDuration(v)
		if err != nil {
			return nil, lineErr(a.Line, "--%s: %v", d.flag, err)
		}
		if dur != 0 && dur < time.Millisecond {
			return nil, lineErr(a.Line, "Interval %q cannot be less than 1ms", d.flag)
		}
		if dur < 0 {
			return nil, lineErr(a.Line, "--%s cannot be negative", d.flag)
		}
		*d.dst = dur
	}
	if v := fs.get("retries"); v != "" {
		r, err := strconv.Atoi(v)
		if err != nil {
			return nil, lineErr(a.Line, "--retries: %v", err)
		}
		if r < 0 {
			return nil, lineErr(a.Line, "--retries cannot be negative (%d)", r)
		}
		in.Health.Retries = r
	}
	return in, nil
}
