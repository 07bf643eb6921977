package dockerfile

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// TestErrorsWrapCause: every error of Parse and Dispatch is a LineError
// at its instruction's line that wraps its cause, and no message names
// the line twice.
func TestErrorsWrapCause(t *testing.T) {
	isParserError := func(err error) bool {
		var le *parser.LocationError
		return errors.As(err, &le)
	}
	for _, tc := range []struct {
		name, src string
		line      int
		is        func(error) bool
	}{
		{"retries", "FROM a\n\nHEALTHCHECK --retries=x CMD true\n", 3, func(err error) bool { return errors.Is(err, strconv.ErrSyntax) }},
		{"onbuild-trigger", "FROM a\nONBUILD HEALTHCHECK --retries=x CMD true\n", 2, func(err error) bool { return errors.Is(err, strconv.ErrSyntax) }},
		{"parser", "FROM a\nRUN <<EOF\nx\n", 2, isParserError},
		{"no-stage", "ENV A=1\n", 1, func(err error) bool { return errors.Is(err, errNoStage) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.src))
			checkLineError(t, err, tc.line)
			if !tc.is(err) {
				t.Errorf("error %v does not wrap its cause", err)
			}
		})
	}
	t.Run("dispatch", func(t *testing.T) {
		df, err := Parse(strings.NewReader("FROM a\nENV A=1\nSTOPSIGNAL SIG$A\nEXPOSE 1/x\n"))
		if err != nil {
			t.Fatal(err)
		}
		d := Dispatcher{Config: &v1.Config{}, Lex: NewLex(df.EscapeToken)}
		for i, in := range df.Stages[0].Instructions {
			_, err := d.Dispatch(in)
			if i == 0 {
				if err != nil {
					t.Fatal(err)
				}
				continue
			}
			checkLineError(t, err, in.Pos())
		}
		_, err = d.Dispatch(df.Stages[0].From)
		checkLineError(t, err, 1)
		if !errors.Is(err, ErrNotMetadata) {
			t.Errorf("FROM: %v, want ErrNotMetadata", err)
		}
	})
}

func checkLineError(t *testing.T, err error, line int) {
	t.Helper()
	var le *LineError
	if !errors.As(err, &le) || le.Line != line {
		t.Fatalf("error %v: want a LineError at line %d", err, line)
	}
	if strings.Count(err.Error(), "Dockerfile:") != 1 || !strings.HasPrefix(err.Error(), "Dockerfile:"+strconv.Itoa(line)+": ") {
		t.Errorf("error %q does not name its line once", err)
	}
}
