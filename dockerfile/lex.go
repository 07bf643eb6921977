package dockerfile

import (
	"fmt"

	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// Lex expands variables in Dockerfile words with buildkit's shell lexer,
// as the legacy builder and `docker commit --change` do: quotes, escapes
// with the file's escape token, $VAR, ${VAR}, ${VAR:-word},
// ${VAR:+word}, ${VAR:?msg} and the pattern forms. Like buildkit's, it is
// not safe for concurrent use.
type Lex struct{ lex *shell.Lex }

// NewLex returns a Lex for a Dockerfile whose escape token is escape
// (Dockerfile.EscapeToken; '\\' by default).
func NewLex(escape rune) *Lex { return &Lex{lex: shell.NewLex(escape)} }

// ProcessWord expands word as one word. env holds "KEY=VALUE" entries; a
// later entry of a key overrides an earlier one.
func (l *Lex) ProcessWord(word string, env []string) (string, error) {
	v, _, err := l.lex.ProcessWord(word, shell.EnvsFromSlice(env))
	if err != nil {
		return "", fmt.Errorf("failed to process %q: %w", word, err)
	}
	return v, nil
}

// ProcessWords expands word and splits the result into words at blanks
// outside quotes, as EXPOSE does with its arguments.
func (l *Lex) ProcessWords(word string, env []string) ([]string, error) {
	v, err := l.lex.ProcessWords(word, shell.EnvsFromSlice(env))
	if err != nil {
		return nil, fmt.Errorf("failed to process %q: %w", word, err)
	}
	return v, nil
}

// ProcessHeredoc expands the body of a COPY or ADD heredoc whose marker is
// unquoted, as BuildKit does: variables only, with quotes kept as written
// and '\\' as the escape whatever the file's escape token.
func ProcessHeredoc(body string, env []string) (string, error) {
	lex := shell.NewLex('\\')
	lex.SkipProcessQuotes = true
	v, _, err := lex.ProcessWord(body, shell.EnvsFromSlice(env))
	if err != nil {
		return "", fmt.Errorf("expanding heredoc: %w", err)
	}
	return v, nil
}
