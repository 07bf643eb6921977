package image

import (
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// commitInstructions are the Dockerfile instructions `docker commit
// --change` accepts (moby's validCommitCommands; STOPSIGNAL from v23 on).
var commitInstructions = map[string]func(*changeState, string) error{
	"CMD":         (*changeState).cmd,
	"ENTRYPOINT":  (*changeState).entrypoint,
	"ENV":         (*changeState).env,
	"EXPOSE":      (*changeState).expose,
	"HEALTHCHECK": (*changeState).healthcheck,
	"LABEL":       (*changeState).label,
	"ONBUILD":     (*changeState).onbuild,
	"USER":        (*changeState).user,
	"VOLUME":      (*changeState).volume,
	"WORKDIR":     (*changeState).workdir,
	"STOPSIGNAL":  (*changeState).stopsignal,
}

type changeState struct {
	cfg    *v1.Config
	cmdSet bool
}

// ApplyChanges runs `docker commit --change` instructions on a copy of
// cfg and returns the copy; cfg is not modified. Like moby's
// BuildFromConfig, the changes are joined by newlines and read as a
// Dockerfile (line continuations and comments included); variables
// expand from the config's Env as it stands before each instruction.
// With no changes the result equals cfg.
func ApplyChanges(cfg v1.Config, changes []string) (v1.Config, error) {
	out := *cfg.DeepCopy()
	st := &changeState{cfg: &out}
	for _, line := range logicalLines(strings.Join(changes, "\n")) {
		kw, rest, _ := strings.Cut(strings.TrimLeft(line, " \t"), " ")
		if k, r, ok := strings.Cut(kw, "\t"); ok {
			kw, rest = k, r+" "+rest
		}
		kw = strings.ToUpper(kw)
		fn, ok := commitInstructions[kw]
		if !ok {
			return v1.Config{}, fmt.Errorf("%s is not a valid change command", kw)
		}
		if err := fn(st, strings.TrimSpace(rest)); err != nil {
			return v1.Config{}, fmt.Errorf("change %q: %w", line, err)
		}
	}
	return out, nil
}

// logicalLines joins backslash-continued lines and drops blank and
// comment lines.
func logicalLines(s string) []string {
	var out []string
	var cur strings.Builder
	for _, l := range strings.Split(s, "\n") {
		t := strings.TrimSpace(l)
		if cur.Len() == 0 && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		if strings.HasSuffix(t, "\\") {
			cur.WriteString(strings.TrimSuffix(strings.TrimRight(l, " \t"), "\\"))
			continue
		}
		cur.WriteString(l)
		out = append(out, strings.TrimSpace(cur.String()))
		cur.Reset()
	}
	if cur.Len() > 0 {
		out = append(out, strings.TrimSpace(cur.String()))
	}
	return out
}

func (st *changeState) lookup(name string) (string, bool) {
	for i := len(st.cfg.Env) - 1; i >= 0; i-- {
		k, v, _ := strings.Cut(st.cfg.Env[i], "=")
		if k == name {
			return v, true
		}
	}
	return "", false
}

// jsonArgs parses the exec (JSON array) form; ok is false for shell form.
func jsonArgs(rest string) ([]string, bool) {
	if !strings.HasPrefix(rest, "[") {
		return nil, false
	}
	var a []string
	if err := json.Unmarshal([]byte(rest), &a); err != nil {
		return nil, false
	}
	if a == nil {
		a = []string{}
	}
	return a, true
}

// cmdLine resolves an exec or shell form command line.
func (st *changeState) cmdLine(rest string) []string {
	if a, ok := jsonArgs(rest); ok {
		return a
	}
	shell := []string{"/bin/sh", "-c"}
	if len(st.cfg.Shell) > 0 {
		shell = st.cfg.Shell
	}
	return append(append([]string(nil), shell...), rest)
}

func (st *changeState) cmd(rest string) error {
	st.cfg.Cmd = st.cmdLine(rest)
	st.cfg.ArgsEscaped = false
	if rest != "" {
		st.cmdSet = true
	}
	return nil
}

func (st *changeState) entrypoint(rest string) error {
	st.cfg.Entrypoint = st.cmdLine(rest)
	st.cfg.ArgsEscaped = false
	if !st.cmdSet {
		st.cfg.Cmd = nil
	}
	return nil
}

// pairs parses the KEY=VALUE... form, or the legacy "KEY VALUE" form.
func (st *changeState) pairs(what, rest string) ([][2]string, error) {
	if rest == "" {
		return nil, fmt.Errorf("%s requires at least one argument", what)
	}
	ws, err := words(rest, st.lookup, true)
	if err != nil {
		return nil, err
	}
	first, _, _ := strings.Cut(rest, " ")
	if !strings.Contains(first, "=") {
		// Legacy form: the first word is the key, the rest of the line
		// (expanded as one word) is the value.
		_, v, _ := strings.Cut(rest, " ")
		vs, err := words(strings.TrimSpace(v), st.lookup, false)
		if err != nil {
			return nil, err
		}
		if strings.TrimSpace(v) == "" {
			return nil, fmt.Errorf("%s must have two arguments", what)
		}
		return [][2]string{{ws[0], vs[0]}}, nil
	}
	var out [][2]string
	for _, w := range ws {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s names can not be blank or lack '=': %q", what, w)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

func (st *changeState) env(rest string) error {
	ps, err := st.pairs("ENV", rest)
	if err != nil {
		return err
	}
	for _, p := range ps {
		kv := p[0] + "=" + p[1]
		replaced := false
		for i, e := range st.cfg.Env {
			if k, _, _ := strings.Cut(e, "="); k == p[0] {
				st.cfg.Env[i] = kv
				replaced = true
			}
		}
		if !replaced {
			st.cfg.Env = append(st.cfg.Env, kv)
		}
	}
	return nil
}

func (st *changeState) label(rest string) error {
	ps, err := st.pairs("LABEL", rest)
	if err != nil {
		return err
	}
	if st.cfg.Labels == nil {
		st.cfg.Labels = map[string]string{}
	}
	for _, p := range ps {
		st.cfg.Labels[p[0]] = p[1]
	}
	return nil
}

func (st *changeState) expose(rest string) error {
	ws, err := words(rest, st.lookup, true)
	if err != nil {
		return err
	}
	if len(ws) == 0 {
		return fmt.Errorf("EXPOSE requires at least one argument")
	}
	if st.cfg.ExposedPorts == nil {
		st.cfg.ExposedPorts = map[string]struct{}{}
	}
	for _, w := range ws {
		ports, proto, _ := strings.Cut(w, "/")
		if proto == "" {
			proto = "tcp"
		}
		proto = strings.ToLower(proto)
		if proto != "tcp" && proto != "udp" && proto != "sctp" {
			return fmt.Errorf("invalid proto: %s", proto)
		}
		lo, hi, isRange := strings.Cut(ports, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return fmt.Errorf("invalid containerPort: %s", ports)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 16); err != nil || b < a {
				return fmt.Errorf("invalid range specified for the Port: %s", ports)
			}
		}
		for p := a; p <= b; p++ {
			st.cfg.ExposedPorts[fmt.Sprintf("%d/%s", p, proto)] = struct{}{}
		}
	}
	return nil
}

func (st *changeState) volume(rest string) error {
	vs, ok := jsonArgs(rest)
	if !ok {
		var err error
		if vs, err = words(rest, st.lookup, true); err != nil {
			return err
		}
	}
	if len(vs) == 0 {
		return fmt.Errorf("VOLUME requires at least one argument")
	}
	if st.cfg.Volumes == nil {
		st.cfg.Volumes = map[string]struct{}{}
	}
	for _, v := range vs {
		if v = strings.TrimSpace(v); v == "" {
			return fmt.Errorf("VOLUME specified can not be an empty string")
		}
		st.cfg.Volumes[v] = struct{}{}
	}
	return nil
}

// one expands rest as a single word.
func (st *changeState) one(what, rest string) (string, error) {
	if rest == "" {
		return "", fmt.Errorf("%s requires exactly one argument", what)
	}
	ws, err := words(rest, st.lookup, false)
	if err != nil {
		return "", err
	}
	return ws[0], nil
}

func (st *changeState) user(rest string) error {
	u, err := st.one("USER", rest)
	st.cfg.User = u
	return err
}

func (st *changeState) workdir(rest string) error {
	w, err := st.one("WORKDIR", rest)
	if err != nil {
		return err
	}
	if !path.IsAbs(w) {
		w = path.Join("/", st.cfg.WorkingDir, w)
	}
	st.cfg.WorkingDir = w
	return nil
}

func (st *changeState) stopsignal(rest string) error {
	s, err := st.one("STOPSIGNAL", rest)
	if err != nil {
		return err
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 {
			return fmt.Errorf("invalid signal: %s", s)
		}
	} else if !knownSignals[strings.TrimPrefix(strings.ToUpper(s), "SIG")] {
		return fmt.Errorf("invalid signal: %s", s)
	}
	st.cfg.StopSignal = s
	return nil
}

var knownSignals = map[string]bool{}

func init() {
	for _, s := range strings.Fields("ABRT ALRM BUS CHLD CLD CONT FPE HUP ILL INT IO IOT KILL PIPE POLL PROF PWR QUIT SEGV STKFLT STOP SYS TERM TRAP TSTP TTIN TTOU URG USR1 USR2 VTALRM WINCH XCPU XFSZ") {
		knownSignals[s] = true
	}
}

func (st *changeState) onbuild(rest string) error {
	kw, _, _ := strings.Cut(rest, " ")
	switch strings.ToUpper(kw) {
	case "":
		return fmt.Errorf("ONBUILD requires at least one argument")
	case "ONBUILD":
		return fmt.Errorf("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
	case "FROM", "MAINTAINER":
		return fmt.Errorf("%s isn't allowed as an ONBUILD trigger", strings.ToUpper(kw))
	}
	st.cfg.OnBuild = append(st.cfg.OnBuild, rest)
	return nil
}

func (st *changeState) healthcheck(rest string) error {
	hc := &v1.HealthConfig{}
	for strings.HasPrefix(rest, "--") {
		flag, after, _ := strings.Cut(rest, " ")
		rest = strings.TrimSpace(after)
		name, val, ok := strings.Cut(strings.TrimPrefix(flag, "--"), "=")
		if !ok {
			return fmt.Errorf("HEALTHCHECK flag %s needs a value", flag)
		}
		var d *time.Duration
		switch name {
		case "interval":
			d = &hc.Interval
		case "timeout":
			d = &hc.Timeout
		case "start-period":
			d = &hc.StartPeriod
		case "retries":
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 {
				return fmt.Errorf("invalid --retries %q", val)
			}
			hc.Retries = n
			continue
		default:
			return fmt.Errorf("unknown flag: %s", name)
		}
		v, err := time.ParseDuration(val)
		if err != nil {
			return fmt.Errorf("invalid --%s %q: %w", name, val, err)
		}
		if v != 0 && v < time.Millisecond {
			return fmt.Errorf("--%s cannot be less than 1ms", name)
		}
		*d = v
	}
	kw, args, _ := strings.Cut(rest, " ")
	args = strings.TrimSpace(args)
	switch strings.ToUpper(kw) {
	case "NONE":
		if args != "" || hc.Interval != 0 || hc.Timeout != 0 || hc.StartPeriod != 0 || hc.Retries != 0 {
			return fmt.Errorf("HEALTHCHECK NONE takes no arguments")
		}
		hc.Test = []string{"NONE"}
	case "CMD":
		if a, ok := jsonArgs(args); ok {
			hc.Test = append([]string{"CMD"}, a...)
		} else {
			hc.Test = []string{"CMD-SHELL", args}
		}
	default:
		return fmt.Errorf("unknown type %q in HEALTHCHECK (try CMD)", kw)
	}
	st.cfg.Healthcheck = hc
	return nil
}
