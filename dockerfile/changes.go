package dockerfile

import (
	"errors"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ErrInvalidChange is what an InvalidChangeError is (errors.Is).
var ErrInvalidChange = errors.New("not a valid change command")

// InvalidChangeError is the error of an instruction that `docker commit
// --change` does not take (RUN, COPY, FROM...). Its text is docker's.
type InvalidChangeError struct {
	Instruction string // lower-case, as docker names it
}

func (e *InvalidChangeError) Error() string {
	return e.Instruction + " is " + ErrInvalidChange.Error()
}

func (e *InvalidChangeError) Is(target error) bool { return target == ErrInvalidChange }

// commitInstructions are the instructions `docker commit --change`
// accepts: moby's validCommitCommands (STOPSIGNAL from Docker 23 on).
var commitInstructions = map[string]bool{
	"cmd": true, "entrypoint": true, "env": true, "expose": true, "healthcheck": true, "label": true,
	"onbuild": true, "user": true, "volume": true, "workdir": true, "stopsignal": true,
}

// A ChangeOption adjusts ApplyChanges to an engine's version.
type ChangeOption func(*changeOptions)

type changeOptions struct {
	noStopSignal bool
}

// WithoutStopSignal refuses STOPSIGNAL as a change, as Docker before 23
// (20.10 among them) does.
func WithoutStopSignal() ChangeOption { return func(o *changeOptions) { o.noStopSignal = true } }

// ApplyChanges runs `docker commit --change` instructions on a copy of
// cfg and returns the copy; cfg is not modified. As moby's
// BuildFromConfig does, the changes are joined by newlines and parsed as
// a Dockerfile (continuation lines, comments and an escape directive
// included), every instruction is checked against the ones commit
// allows before any is parsed further, and each is run by the build's
// own Dispatcher, its words expanded with the config's Env as it stands
// before it. With no changes the result equals cfg.
func ApplyChanges(cfg v1.Config, changes []string, opts ...ChangeOption) (v1.Config, error) {
	var o changeOptions
	for _, opt := range opts {
		opt(&o)
	}
	out := *cfg.DeepCopy()
	if len(changes) == 0 {
		return out, nil
	}
	ins, escape, err := parseChanges(strings.Join(changes, "\n"), o)
	if err != nil {
		return v1.Config{}, err
	}
	d := Dispatcher{Config: &out, Lex: NewLex(escape)}
	for _, in := range ins {
		if _, err := d.Dispatch(in); err != nil {
			return v1.Config{}, changeError(in.Source(), err)
		}
	}
	return out, nil
}

// parseChanges parses the joined changes into instructions.
func parseChanges(src string, o changeOptions) ([]Instruction, rune, error) {
	res, err := parseAST(src)
	if err != nil {
		return nil, 0, changeError("", err)
	}
	for _, n := range res.AST.Children {
		name := strings.ToLower(n.Value)
		if !commitInstructions[name] || name == "stopsignal" && o.noStopSignal {
			return nil, 0, &InvalidChangeError{Instruction: name}
		}
	}
	var ins []Instruction
	for _, n := range res.AST.Children {
		in, err := parseNode(n)
		if err != nil {
			return nil, 0, changeError(n.Original, err)
		}
		ins = append(ins, in)
	}
	return ins, res.EscapeToken, nil
}

// changeError names the change an error is about instead of a line of
// the joined text, which the user never wrote.
func changeError(change string, err error) error {
	var le *LineError
	if errors.As(err, &le) {
		err = le.Err
	}
	if change == "" {
		return fmt.Errorf("change: %w", err)
	}
	return fmt.Errorf("change %q: %w", change, err)
}
