package dockerfile

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// Limits on what Parse accepts, beyond the parser's own 64 KiB line limit.
const (
	MaxDockerfileSize = 16 << 20
	MaxInstructions   = 100_000
)

// LineError is an error at a line of the Dockerfile. Its text is
// "Dockerfile:LINE: MSG"; Unwrap gives the cause.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("Dockerfile:%d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// AtLine locates err at a line of the Dockerfile. An error that already
// carries a line keeps it, so no message says "Dockerfile:N:" twice; a
// nil err stays nil.
func AtLine(line int, err error) error {
	var le *LineError
	if err == nil || errors.As(err, &le) {
		return err
	}
	return &LineError{Line: line, Err: err}
}

// Parse reads a Dockerfile and returns its typed instructions. Syntax is
// checked here (instruction names, argument counts, flags, JSON forms,
// heredocs, stage names); variables are expanded only when building.
// Every error is a *LineError.
func Parse(r io.Reader) (*Dockerfile, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxDockerfileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading Dockerfile: %w", err)
	}
	if len(data) > MaxDockerfileSize {
		return nil, fmt.Errorf("Dockerfile is larger than %d bytes", MaxDockerfileSize)
	}
	res, err := parseAST(string(data))
	if err != nil {
		return nil, err
	}
	if len(res.AST.Children) > MaxInstructions {
		return nil, fmt.Errorf("Dockerfile has more than %d instructions", MaxInstructions)
	}
	df := &Dockerfile{EscapeToken: res.EscapeToken}
	if err := df.readDirectives(data); err != nil {
		return nil, err
	}
	for _, w := range res.Warnings {
		line := 0
		if w.Location != nil {
			line = w.Location.Start.Line
		}
		df.Warnings = append(df.Warnings, fmt.Sprintf("Dockerfile:%d: %s", line, w.Short))
	}
	if err := df.addStages(res.AST.Children); err != nil {
		return nil, err
	}
	return df, df.checkStageNames()
}

// parseAST runs buildkit's parser, locating its errors at their line.
func parseAST(src string) (*parser.Result, error) {
	res, err := parser.Parse(strings.NewReader(src))
	if err == nil {
		return res, nil
	}
	line := 1
	var le *parser.LocationError
	if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 {
		line = le.Locations[0][0].Start.Line
		// Directive errors are located by the parser's 0-based line
		// counter; every other error by a 1-based one.
		if strings.Contains(err.Error(), "escape") {
			line++
		}
		line = max(line, 1)
	}
	return nil, &LineError{Line: line, Err: parserError{err}}
}

// parserError is an error of buildkit's parser shown without the stack
// its text may carry; Unwrap gives the parser's error.
type parserError struct{ err error }

func (e parserError) Error() string {
	err := e.err
	var le *parser.LocationError
	if errors.As(err, &le) && le.Unwrap() != nil {
		err = le.Unwrap()
	}
	return strings.SplitN(err.Error(), "\n", 2)[0]
}

func (e parserError) Unwrap() error { return e.err }

// addStages parses the nodes and groups them into the meta ARGs and the
// stages.
func (df *Dockerfile) addStages(nodes []*parser.Node) error {
	var stage *Stage
	for _, n := range nodes {
		in, err := parseNode(n)
		if err != nil {
			return err
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
				return AtLine(n.StartLine, errNoStage)
			}
			stage.Instructions = append(stage.Instructions, in)
		}
	}
	if len(df.Stages) == 0 {
		line := 1
		if len(nodes) > 0 {
			line = nodes[0].StartLine
		}
		return AtLine(line, errNoStage)
	}
	return nil
}

var errNoStage = errors.New("no build stage in current context")

func (df *Dockerfile) checkStageNames() error {
	seen := map[string]int{}
	for _, s := range df.Stages {
		if s.From.Name == "" {
			continue
		}
		if prev, dup := seen[s.From.Name]; dup {
			return AtLine(s.From.Line, fmt.Errorf("duplicate stage name %q, first defined on line %d", s.From.Name, prev))
		}
		seen[s.From.Name] = s.From.Line
	}
	return nil
}

// ParseTrigger parses an ONBUILD trigger recorded in a base image's
// config, locating it (and its errors) at line, the FROM that runs it.
func ParseTrigger(expr string, line int) (Instruction, error) {
	res, err := parser.Parse(strings.NewReader(expr + "\n"))
	if err != nil || len(res.AST.Children) != 1 {
		if err == nil {
			err = errors.New("not one instruction")
		}
		return nil, AtLine(line, fmt.Errorf("bad ONBUILD trigger %q in the base image: %w", expr, err))
	}
	n := res.AST.Children[0]
	n.StartLine = line
	in, err := parseCommand(n, true)
	return in, AtLine(line, err)
}

// parseNode parses one instruction, attaching its location to it and to
// its error: the parse functions below never name a line.
func parseNode(n *parser.Node) (Instruction, error) {
	in, err := parseCommand(n, false)
	if err != nil {
		return nil, AtLine(n.StartLine, err)
	}
	return in, nil
}
