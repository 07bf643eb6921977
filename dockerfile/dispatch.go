package dockerfile

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/docker/go-connections/nat"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/sys/signal"
)

// ErrNotMetadata is returned by Dispatch for an instruction that does
// more than change the config (FROM, ARG, RUN, COPY, ADD, MAINTAINER).
var ErrNotMetadata = errors.New("not a metadata instruction")

// defaultShell is the SHELL of a config that sets none (Linux).
var defaultShell = []string{"/bin/sh", "-c"}

// A Dispatcher applies the metadata instructions ENV, LABEL, EXPOSE, USER,
// WORKDIR, CMD, ENTRYPOINT, VOLUME, STOPSIGNAL, HEALTHCHECK, ONBUILD and
// SHELL to an image config, one dispatchX each, with the semantics of
// moby's legacy builder (builder/dockerfile/dispatchers.go), which runs
// both `docker build` and `docker commit --change`. The builder and
// ApplyChanges both go through it, so the two cannot disagree.
type Dispatcher struct {
	// Config is changed in place; the caller owns it (copy it first if
	// it is shared).
	Config *v1.Config
	// Lex expands words (NewLex with the file's escape token).
	Lex *Lex
	// Args are "KEY=VALUE" build args that words may use; the config's
	// Env overrides them. docker commit has none.
	Args []string
	// CmdSet records that a CMD with arguments ran in this stage: a
	// later ENTRYPOINT then keeps Cmd instead of clearing it. Dispatch
	// sets it.
	CmdSet bool
	// BuildKit applies the rules of BuildKit's dockerfile frontend
	// (dockerfile2llb) where they differ from the legacy builder's:
	// HEALTHCHECK --start-interval is taken (into StartInterval). Without it (the legacy builder, docker
	// commit --change) --start-interval is refused.
	BuildKit bool
	// Env, when not nil, is the environment words are expanded with,
	// instead of Args then Config.Env: BuildKit's build state, where an
	// ARG overrides an earlier ENV of its name.
	Env []string
	// OnEnv, when set, is called by ENV with each pair it sets, after
	// expansion, in order (the caller's Env follows it).
	OnEnv func(key, value string)
	// StartInterval is the Healthcheck's start interval, which
	// v1.HealthConfig cannot hold: HEALTHCHECK sets it (0 without
	// --start-interval) in BuildKit mode; the caller writes it into the
	// image's config JSON.
	StartInterval time.Duration
}

// Dispatch applies in to d.Config. Its words are expanded, all of them
// before any is applied, with the Env the config has before in (so
// `ENV A=2 B=$A` gives B the old A), after d.Args. It returns what the
// legacy builder writes of the step in the history, after "#(nop) ".
// Errors carry in's line; one that is not metadata is ErrNotMetadata.
// On error d.Config may be partly changed.
func (d *Dispatcher) Dispatch(in Instruction) (string, error) {
	s, err := d.dispatch(in)
	return s, AtLine(in.Pos(), err)
}

func (d *Dispatcher) dispatch(in Instruction) (string, error) {
	x := expander{lex: d.Lex, env: append(slices.Clone(d.Args), d.Config.Env...)}
	if d.Env != nil {
		x.env = d.Env
	}
	switch in := in.(type) {
	case *EnvInstr:
		return d.dispatchEnv(in, x)
	case *LabelInstr:
		return d.dispatchLabel(in, x)
	case *ExposeInstr:
		return d.dispatchExpose(in, x)
	case *UserInstr:
		return d.dispatchUser(in, x)
	case *WorkdirInstr:
		return d.dispatchWorkdir(in, x)
	case *CmdInstr:
		return d.dispatchCmd(in)
	case *EntrypointInstr:
		return d.dispatchEntrypoint(in)
	case *VolumeInstr:
		return d.dispatchVolume(in, x)
	case *StopSignalInstr:
		return d.dispatchStopSignal(in, x)
	case *HealthcheckInstr:
		return d.dispatchHealthcheck(in)
	case *OnbuildInstr:
		return d.dispatchOnbuild(in)
	case *ShellInstr:
		return d.dispatchShell(in)
	}
	return "", fmt.Errorf("%s: %w", in.Source(), ErrNotMetadata)
}

// expander expands words with one environment.
type expander struct {
	lex *Lex
	env []string
}

func (x expander) word(w string) (string, error)    { return x.lex.ProcessWord(w, x.env) }
func (x expander) words(w string) ([]string, error) { return x.lex.ProcessWords(w, x.env) }

// pairs expands the keys and values of ENV and LABEL.
func (x expander) pairs(kvs []KeyValue) ([]KeyValue, error) {
	out := make([]KeyValue, 0, len(kvs))
	for _, kv := range kvs {
		k, err := x.word(kv.Key)
		if err != nil {
			return nil, err
		}
		v, err := x.word(*kv.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, KeyValue{Key: k, Value: &v})
	}
	return out, nil
}

// dispatchEnv replaces the first entry of each key or appends one.
func (d *Dispatcher) dispatchEnv(in *EnvInstr, x expander) (string, error) {
	pairs, err := x.pairs(in.Pairs)
	if err != nil {
		return "", err
	}
	for _, kv := range pairs {
		d.Config.Env = setEnv(d.Config.Env, kv.Key, *kv.Value)
		if d.OnEnv != nil {
			d.OnEnv(kv.Key, *kv.Value)
		}
	}
	return "ENV " + kvs(pairs), nil
}

func setEnv(env []string, k, v string) []string {
	for i, e := range env {
		if ek, _, _ := strings.Cut(e, "="); ek == k {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}

func (d *Dispatcher) dispatchLabel(in *LabelInstr, x expander) (string, error) {
	pairs, err := x.pairs(in.Pairs)
	if err != nil {
		return "", err
	}
	if d.Config.Labels == nil {
		d.Config.Labels = map[string]string{}
	}
	for _, kv := range pairs {
		d.Config.Labels[kv.Key] = *kv.Value
	}
	return "LABEL " + kvs(pairs), nil
}

// dispatchExpose expands each argument into words (EXPOSE $PORTS with
// PORTS="80 443" is two ports) and adds one key per port, as docker's
// port specs are read: a range 8000-8002 is three keys, the protocol
// (tcp by default, udp, sctp) is lower-cased, and of ip:host:port only
// the container port counts.
func (d *Dispatcher) dispatchExpose(in *ExposeInstr, x expander) (string, error) {
	var ports []string
	for _, p := range in.Ports {
		ws, err := x.words(p)
		if err != nil {
			return "", err
		}
		ports = append(ports, ws...)
	}
	exposed, _, err := nat.ParsePortSpecs(ports)
	if err != nil {
		return "", err
	}
	if d.Config.ExposedPorts == nil {
		d.Config.ExposedPorts = map[string]struct{}{}
	}
	for p := range exposed {
		d.Config.ExposedPorts[string(p)] = struct{}{}
	}
	sort.Strings(ports)
	return "EXPOSE " + strings.Join(ports, " "), nil
}

func (d *Dispatcher) dispatchUser(in *UserInstr, x expander) (string, error) {
	u, err := x.word(in.User)
	if err != nil {
		return "", err
	}
	d.Config.User = u
	return "USER " + u, nil
}

// dispatchWorkdir joins a relative path to the current WorkingDir; an
// absolute one is taken as written, uncleaned, as Docker 20.10 and
// BuildKit (system.NormalizeWorkdir) do.
func (d *Dispatcher) dispatchWorkdir(in *WorkdirInstr, x expander) (string, error) {
	p, err := x.word(in.Path)
	if err != nil {
		return "", err
	}
	if p == "" {
		return "", errors.New("WORKDIR: cannot normalize nothing")
	}
	if !path.IsAbs(p) {
		p = path.Join("/", d.Config.WorkingDir, p)
	}
	d.Config.WorkingDir = p
	return "WORKDIR " + p, nil
}

func (d *Dispatcher) dispatchCmd(in *CmdInstr) (string, error) {
	d.Config.Cmd = d.commandLine(in.Cmd, false)
	d.Config.ArgsEscaped = false
	if len(in.Cmd.Args) > 0 {
		d.CmdSet = true
	}
	return fmt.Sprintf("CMD %q", d.Config.Cmd), nil
}

// dispatchEntrypoint clears Cmd unless a CMD with arguments ran in this
// stage.
func (d *Dispatcher) dispatchEntrypoint(in *EntrypointInstr) (string, error) {
	d.Config.Entrypoint = d.commandLine(in.Cmd, true)
	d.Config.ArgsEscaped = false
	if !d.CmdSet {
		d.Config.Cmd = nil
	}
	return fmt.Sprintf("ENTRYPOINT %q", d.Config.Entrypoint), nil
}

// commandLine resolves CMD's and ENTRYPOINT's argument as moby does: the
// exec form as is, the shell form run by the config's SHELL. An empty
// argument is an empty list, or nil when emptyAsNil (ENTRYPOINT); so a
// bare CMD is the shell alone, as docker makes it.
func (d *Dispatcher) commandLine(cl CommandLine, emptyAsNil bool) []string {
	args := append([]string{}, cl.Args...)
	if cl.ShellForm && len(args) > 0 {
		args = []string{strings.Join(args, " ")}
	}
	if emptyAsNil && len(args) == 0 {
		return nil
	}
	if cl.ShellForm {
		args = append(Shell(*d.Config), args...)
	}
	return args
}

// Shell is the shell a config runs shell-form commands with: its SHELL,
// else /bin/sh -c. The result is a new slice.
func Shell(c v1.Config) []string {
	if len(c.Shell) > 0 {
		return slices.Clone(c.Shell)
	}
	return slices.Clone(defaultShell)
}

func (d *Dispatcher) dispatchVolume(in *VolumeInstr, x expander) (string, error) {
	var vols []string
	for _, p := range in.Paths {
		v, err := x.word(strings.TrimSpace(p))
		if err != nil {
			return "", err
		}
		if v == "" {
			return "", errVolumeEmpty
		}
		vols = append(vols, v)
	}
	if d.Config.Volumes == nil {
		d.Config.Volumes = map[string]struct{}{}
	}
	for _, v := range vols {
		d.Config.Volumes[v] = struct{}{}
	}
	return fmt.Sprintf("VOLUME %v", vols), nil
}

// dispatchStopSignal accepts what moby's signal.ParseSignal does: a
// signal name with or without SIG, in any case, or a non-zero number.
func (d *Dispatcher) dispatchStopSignal(in *StopSignalInstr, x expander) (string, error) {
	s, err := x.word(in.Signal)
	if err != nil {
		return "", err
	}
	if _, err := signal.ParseSignal(s); err != nil {
		return "", err
	}
	d.Config.StopSignal = s
	return "STOPSIGNAL " + s, nil
}

// dispatchHealthcheck sets the parsed check; its history text is the
// legacy builder's %q of its HealthConfig, where the int Retries prints
// as a quoted character.
//
// In BuildKit mode it also sets StartInterval, and the text is
// BuildKit's %+v of its HealthcheckConfig.
func (d *Dispatcher) dispatchHealthcheck(in *HealthcheckInstr) (string, error) {
	h := in.Health
	h.Test = slices.Clone(h.Test)
	if d.BuildKit {
		d.Config.Healthcheck = &h
		d.StartInterval = in.StartInterval
		return fmt.Sprintf("HEALTHCHECK {Test:%v Interval:%v Timeout:%v StartPeriod:%v StartInterval:%v Retries:%d}",
			h.Test, h.Interval, h.Timeout, h.StartPeriod, in.StartInterval, h.Retries), nil
	}
	if in.StartInterval != 0 {
		return "", errors.New("HEALTHCHECK --start-interval is only taken by BuildKit-mode builds (not by the legacy builder or commit --change)")
	}
	d.Config.Healthcheck = &h
	return fmt.Sprintf("HEALTHCHECK &{%q %q %q %q %q}", h.Test, h.Interval, h.Timeout, h.StartPeriod, rune(h.Retries)), nil
}

func (d *Dispatcher) dispatchOnbuild(in *OnbuildInstr) (string, error) {
	d.Config.OnBuild = append(d.Config.OnBuild, in.Expression)
	return "ONBUILD " + in.Expression, nil
}

func (d *Dispatcher) dispatchShell(in *ShellInstr) (string, error) {
	d.Config.Shell = slices.Clone(in.Shell)
	return fmt.Sprintf("SHELL %v", d.Config.Shell), nil
}
