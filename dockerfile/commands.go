package dockerfile

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// This file turns one parser node into one typed instruction: one parse
// function per instruction, as buildkit's instructions package has them.
// None of them names a line; parseNode attaches the location once.

// request is one node as the parse functions see it.
type request struct {
	node      *parser.Node
	name      string   // the instruction, upper-case
	args      []string // the node's argument chain
	at        at
	inOnbuild bool // the node is an ONBUILD trigger
}

func (r *request) json() bool { return r.node.Attributes["json"] }

// parseCommand picks the parse function of the node's instruction.
func parseCommand(n *parser.Node, inOnbuild bool) (Instruction, error) {
	r := &request{node: n, name: strings.ToUpper(n.Value), args: words(n),
		at: at{Line: n.StartLine, Original: n.Original}, inOnbuild: inOnbuild}
	switch strings.ToLower(n.Value) {
	case "from":
		return parseFrom(r)
	case "arg":
		return parseArg(r)
	case "run":
		return parseRun(r)
	case "cmd":
		return parseCmd(r)
	case "entrypoint":
		return parseEntrypoint(r)
	case "shell":
		return parseShell(r)
	case "copy", "add":
		return parseCopy(r)
	case "env":
		return parseEnv(r)
	case "label":
		return parseLabel(r)
	case "user":
		return parseUser(r)
	case "workdir":
		return parseWorkdir(r)
	case "stopsignal":
		return parseStopSignal(r)
	case "maintainer":
		return parseMaintainer(r)
	case "expose":
		return parseExpose(r)
	case "volume":
		return parseVolume(r)
	case "healthcheck":
		return parseHealthcheck(r)
	case "onbuild":
		return parseOnbuild(r)
	}
	return nil, fmt.Errorf("unknown instruction: %s", r.name)
}

// words lists a node's argument chain.
func words(n *parser.Node) []string {
	var w []string
	for x := n.Next; x != nil; x = x.Next {
		w = append(w, x.Value)
	}
	return w
}

// stageName is what BuildKit allows as a stage name.
var stageName = regexp.MustCompile(`^[a-z][a-z0-9-_.]*$`)

func parseFrom(r *request) (Instruction, error) {
	fs, err := r.flags("platform")
	if err != nil {
		return nil, err
	}
	if r.inOnbuild {
		return nil, errors.New("FROM isn't allowed as an ONBUILD trigger")
	}
	in := &FromInstr{at: r.at, Platform: fs.get("platform")}
	switch {
	case len(r.args) == 1:
	case len(r.args) == 3 && strings.EqualFold(r.args[1], "as"):
		in.Name = strings.ToLower(r.args[2])
		if !stageName.MatchString(in.Name) {
			return nil, fmt.Errorf("invalid name for build stage: %q, name can't start with a number or contain symbols", r.args[2])
		}
	default:
		return nil, errors.New("FROM requires either one or three arguments")
	}
	in.Image = r.args[0]
	return in, nil
}

func parseArg(r *request) (Instruction, error) {
	if err := r.noFlags(); err != nil {
		return nil, err
	}
	if len(r.args) == 0 {
		return nil, errors.New("ARG requires at least one argument")
	}
	in := &ArgInstr{at: r.at}
	for _, w := range r.args {
		k, v, hasVal := strings.Cut(w, "=")
		if k == "" {
			return nil, errors.New("ARG names can not be blank")
		}
		kv := KeyValue{Key: k}
		if hasVal {
			kv.Value = &v
		}
		in.Args = append(in.Args, kv)
	}
	return in, nil
}

func parseRun(r *request) (Instruction, error) {
	fs, err := r.flags("network", "mount", "security")
	if err != nil {
		return nil, err
	}
	for _, v := range fs.all["mount"] {
		if _, err := ParseMount(v, nil); err != nil {
			return nil, err
		}
	}
	switch fs.get("security") {
	case "", "sandbox", "insecure":
	default:
		return nil, fmt.Errorf("RUN --security=%s: want sandbox or insecure", fs.get("security"))
	}
	switch fs.get("network") {
	case "", "default", "none", "host":
	default:
		return nil, fmt.Errorf("RUN --network=%s: want default, none or host", fs.get("network"))
	}
	cl, err := r.commandLine(true)
	if err != nil {
		return nil, err
	}
	return &RunInstr{at: r.at, Cmd: cl, Heredocs: heredocs(r.node), Network: fs.get("network"), Security: fs.get("security"), Mounts: fs.all["mount"]}, nil
}

func parseCmd(r *request) (Instruction, error) {
	if err := r.noFlags(); err != nil {
		return nil, err
	}
	cl, err := r.commandLine(false)
	if err != nil {
		return nil, err
	}
	return &CmdInstr{at: r.at, Cmd: cl}, nil
}

func parseEntrypoint(r *request) (Instruction, error) {
	if err := r.noFlags(); err != nil {
		return nil, err
	}
	cl, err := r.commandLine(false)
	if err != nil {
		return nil, err
	}
	return &EntrypointInstr{at: r.at, Cmd: cl}, nil
}

// commandLine is the argument of RUN, CMD and ENTRYPOINT.
func (r *request) commandLine(needArgs bool) (CommandLine, error) {
	if needArgs && len(r.args) == 0 {
		return CommandLine{}, fmt.Errorf("%s requires at least one argument", r.name)
	}
	return CommandLine{Args: r.args, ShellForm: !r.json()}, nil
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

func parseShell(r *request) (Instruction, error) {
	if err := r.noFlags(); err != nil {
		return nil, err
	}
	if !r.json() {
		return nil, errors.New("SHELL requires the arguments to be in JSON form")
	}
	if len(r.args) == 0 {
		return nil, errors.New("SHELL requires at least one argument")
	}
	return &ShellInstr{at: r.at, Shell: r.args}, nil
}

// parseCopy parses COPY and ADD with the flags BuildKit's dockerfile:1
// frontend takes (instructions.parseCopy and parseAdd).
func parseCopy(r *request) (Instruction, error) {
	add := r.name == "ADD"
	allowed := []string{"from", "chown", "chmod", "link", "exclude", "parents"}
	if add {
		allowed = []string{"chown", "chmod", "link", "checksum", "keep-git-dir", "unpack", "exclude"}
	}
	fs, err := r.flags(allowed...)
	if err != nil {
		return nil, err
	}
	if len(r.args) < 2 {
		return nil, fmt.Errorf("%s requires at least two arguments, but only one was provided. Destination could not be determined", r.name)
	}
	in := &CopyInstr{at: r.at, Add: add, Sources: r.args[:len(r.args)-1], Dest: r.args[len(r.args)-1],
		From: fs.get("from"), Chown: fs.get("chown"), Chmod: fs.get("chmod"), Checksum: fs.get("checksum"),
		Excludes: fs.all["exclude"], Heredocs: heredocs(r.node)}
	for _, b := range []struct {
		flag string
		dst  *bool
	}{{"link", &in.Link}, {"parents", &in.Parents}} {
		if *b.dst, err = fs.boolean(b.flag); err != nil {
			return nil, err
		}
	}
	for _, b := range []struct {
		flag string
		dst  **bool
	}{{"unpack", &in.Unpack}, {"keep-git-dir", &in.KeepGitDir}} {
		if fs.set[b.flag] {
			v, err := fs.boolean(b.flag)
			if err != nil {
				return nil, err
			}
			*b.dst = &v
		}
	}
	for _, f := range []string{"from", "chown", "chmod", "checksum", "exclude"} {
		if fs.set[f] && !fs.valued[f] {
			return nil, fmt.Errorf("missing a value on flag: --%s", f)
		}
	}
	if strings.HasPrefix(in.Dest, "<<") && !r.json() {
		return nil, fmt.Errorf("%s cannot accept a heredoc as a destination", r.name)
	}
	if in.Chmod != "" && !strings.Contains(in.Chmod, "$") {
		if _, err := ParseChmod(in.Chmod); err != nil {
			return nil, err
		}
	}
	return in, nil
}

func parseEnv(r *request) (Instruction, error) {
	pairs, err := r.keyValues()
	if err != nil {
		return nil, err
	}
	return &EnvInstr{at: r.at, Pairs: pairs}, nil
}

func parseLabel(r *request) (Instruction, error) {
	pairs, err := r.keyValues()
	if err != nil {
		return nil, err
	}
	return &LabelInstr{at: r.at, Pairs: pairs}, nil
}

// keyValues reads ENV's and LABEL's pairs: the parser gives them as
// key, value, separator triples.
func (r *request) keyValues() ([]KeyValue, error) {
	if err := r.noFlags(); err != nil {
		return nil, err
	}
	n := r.node
	if n.Next == nil {
		return nil, fmt.Errorf("%s requires at least one argument", r.name)
	}
	var pairs []KeyValue
	for x := n.Next; x != nil; {
		if x.Next == nil {
			return nil, fmt.Errorf("%s: bad key-value pair", r.name)
		}
		v := x.Next.Value
		if x.Value == "" {
			return nil, fmt.Errorf("%s names can not be blank", r.name)
		}
		pairs = append(pairs, KeyValue{Key: x.Value, Value: &v})
		x = x.Next.Next
		if x != nil {
			x = x.Next // skip the separator node
		}
	}
	return pairs, nil
}

func parseUser(r *request) (Instruction, error) {
	v, err := r.oneArg()
	if err != nil {
		return nil, err
	}
	return &UserInstr{at: r.at, User: v}, nil
}

func parseWorkdir(r *request) (Instruction, error) {
	v, err := r.oneArg()
	if err != nil {
		return nil, err
	}
	if len(strings.Fields(v)) > 1 && !strings.ContainsAny(v, `"'\`) {
		return nil, errors.New("WORKDIR requires exactly one argument")
	}
	return &WorkdirInstr{at: r.at, Path: v}, nil
}

func parseStopSignal(r *request) (Instruction, error) {
	v, err := r.oneArg()
	if err != nil {
		return nil, err
	}
	return &StopSignalInstr{at: r.at, Signal: v}, nil
}

func parseMaintainer(r *request) (Instruction, error) {
	v, err := r.oneArg()
	if err != nil {
		return nil, err
	}
	return &MaintainerInstr{at: r.at, Name: v}, nil
}

// oneArg is the argument of an instruction that takes exactly one.
func (r *request) oneArg() (string, error) {
	if err := r.noFlags(); err != nil {
		return "", err
	}
	if len(r.args) != 1 {
		return "", fmt.Errorf("%s requires exactly one argument", r.name)
	}
	return r.args[0], nil
}

func parseExpose(r *request) (Instruction, error) {
	if err := r.noFlags(); err != nil {
		return nil, err
	}
	if len(r.args) == 0 {
		return nil, errors.New("EXPOSE requires at least one argument")
	}
	return &ExposeInstr{at: r.at, Ports: r.args}, nil
}

func parseVolume(r *request) (Instruction, error) {
	if err := r.noFlags(); err != nil {
		return nil, err
	}
	if len(r.args) == 0 {
		return nil, errors.New("VOLUME requires at least one argument")
	}
	for _, p := range r.args {
		if strings.TrimSpace(p) == "" {
			return nil, errVolumeEmpty
		}
	}
	return &VolumeInstr{at: r.at, Paths: r.args}, nil
}

var errVolumeEmpty = errors.New("VOLUME specified can not be an empty string")

func parseOnbuild(r *request) (Instruction, error) {
	if err := r.noFlags(); err != nil {
		return nil, err
	}
	n := r.node
	if n.Next == nil || len(n.Next.Children) == 0 {
		return nil, errors.New("ONBUILD requires at least one argument")
	}
	child := n.Next.Children[0]
	switch strings.ToLower(child.Value) {
	case "onbuild":
		return nil, errors.New("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
	case "from", "maintainer":
		return nil, fmt.Errorf("%s isn't allowed as an ONBUILD trigger", strings.ToUpper(child.Value))
	}
	child.StartLine = n.StartLine
	if _, err := parseCommand(child, true); err != nil {
		return nil, err
	}
	return &OnbuildInstr{at: r.at, Expression: onbuildPrefix.ReplaceAllString(n.Original, "")}, nil
}

var onbuildPrefix = regexp.MustCompile(`(?i)^\s*ONBUILD\s*`)

// parseHealthcheck parses HEALTHCHECK NONE (whose flags buildkit and
// docker ignore unchecked) and HEALTHCHECK [flags] CMD ...
func parseHealthcheck(r *request) (Instruction, error) {
	if len(r.args) == 0 {
		return nil, errors.New("HEALTHCHECK requires an argument")
	}
	in := &HealthcheckInstr{at: r.at}
	switch typ := strings.ToUpper(r.args[0]); typ {
	case "NONE":
		if len(r.args) > 1 {
			return nil, errors.New("HEALTHCHECK NONE takes no arguments")
		}
		in.Health.Test = []string{"NONE"}
		return in, nil
	case "CMD":
	default:
		return nil, fmt.Errorf("Unknown type %q in HEALTHCHECK (try CMD)", typ)
	}
	cmd := r.args[1:]
	if len(cmd) == 0 {
		return nil, errors.New("Missing command after HEALTHCHECK CMD")
	}
	if r.json() {
		in.Health.Test = append([]string{"CMD"}, cmd...)
	} else {
		in.Health.Test = []string{"CMD-SHELL", strings.Join(cmd, " ")}
	}
	return in, r.healthFlags(in)
}

// healthFlags reads HEALTHCHECK CMD's --interval, --timeout,
// --start-period, --start-interval and --retries.
func (r *request) healthFlags(in *HealthcheckInstr) error {
	fs, err := r.flags("interval", "timeout", "start-period", "start-interval", "retries")
	if err != nil {
		return err
	}
	for _, d := range []struct {
		flag string
		dst  *time.Duration
	}{{"interval", &in.Health.Interval}, {"timeout", &in.Health.Timeout}, {"start-period", &in.Health.StartPeriod},
		{"start-interval", &in.StartInterval}} {
		if *d.dst, err = interval(d.flag, fs.get(d.flag)); err != nil {
			return err
		}
	}
	if v := fs.get("retries"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("--retries: %w", err)
		}
		if n < 0 {
			return fmt.Errorf("--retries cannot be negative (%d)", n)
		}
		in.Health.Retries = n
	}
	return nil
}

// interval parses a HEALTHCHECK duration flag: empty is 0, and a set
// value is at least 1ms (so never negative).
func interval(flag, v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("--%s: %w", flag, err)
	}
	if d != 0 && d < time.Millisecond {
		return 0, fmt.Errorf("Interval %q cannot be less than 1ms", flag)
	}
	return d, nil
}

// flagSet is an instruction's --flags; bool flags may be given without a
// value.
type flagSet struct {
	vals   map[string]string
	set    map[string]bool
	valued map[string]bool     // given with "="
	all    map[string][]string // every value of a repeatable flag, in order
}

// repeatable are the flags that may be given more than once.
var repeatable = map[string]bool{"mount": true, "exclude": true}

// boolean reads a bool flag as BuildKit's BFlags does: absent is false,
// bare or "true" is true, "false" is false (case-insensitive).
func (fs *flagSet) boolean(k string) (bool, error) {
	if !fs.set[k] {
		return false, nil
	}
	if fs.valued[k] && fs.vals[k] == "" {
		return false, fmt.Errorf("missing a value on flag: --%s", k)
	}
	switch strings.ToLower(fs.vals[k]) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("expecting boolean value for flag --%s, not: %s", k, fs.vals[k])
}

func (fs *flagSet) get(k string) string { return fs.vals[k] }

// flags parses the node's --flags against the allowed names.
func (r *request) flags(allowed ...string) (*flagSet, error) {
	fs := &flagSet{vals: map[string]string{}, set: map[string]bool{}, valued: map[string]bool{}, all: map[string][]string{}}
	ok := map[string]bool{}
	for _, a := range allowed {
		ok[a] = true
	}
	for _, f := range r.node.Flags {
		if !strings.HasPrefix(f, "--") {
			return nil, fmt.Errorf("%s: bad flag %q", r.name, f)
		}
		k, v, hasVal := strings.Cut(f[2:], "=")
		if !ok[k] {
			return nil, fmt.Errorf("unknown flag: --%s", k)
		}
		if fs.set[k] && !repeatable[k] {
			return nil, fmt.Errorf("duplicate flag specified: --%s", k)
		}
		if !hasVal {
			v = "true"
		}
		fs.vals[k], fs.set[k], fs.valued[k] = v, true, hasVal
		fs.all[k] = append(fs.all[k], v)
	}
	return fs, nil
}

// noFlags refuses every flag.
func (r *request) noFlags() error {
	_, err := r.flags()
	return err
}
