package image

import (
	"fmt"
	"strings"
)

// lookup finds a variable; ok is false when it is not set.
type lookup func(name string) (value string, ok bool)

// words splits s into shell words the way a Dockerfile does for ENV,
// LABEL, EXPOSE, VOLUME and the other expanding instructions: single
// quotes are literal, double quotes allow $-expansion and \-escapes of
// \, ", $ and `, an unquoted backslash escapes the next character, and
// $VAR, ${VAR}, ${VAR:-word} and ${VAR:+word} are expanded from env.
// When split is false s is one word and blanks are kept. All the special
// characters are ASCII, so walking bytes is safe for UTF-8.
func words(s string, env lookup, split bool) ([]string, error) {
	var (
		out    []string
		cur    strings.Builder
		inWord bool
		i      int
	)
	for i < len(s) {
		c := s[i]
		switch {
		case split && (c == ' ' || c == '\t' || c == '\n'):
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
			i++
			continue
		case c == '\\' && i+1 < len(s):
			cur.WriteByte(s[i+1])
			i += 2
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unexpected end of statement while looking for matching single-quote in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 2
		case c == '"':
			i++
			closed := false
			for i < len(s) && !closed {
				switch {
				case s[i] == '"':
					closed = true
					i++
				case s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\\\"$`", s[i+1]) >= 0:
					cur.WriteByte(s[i+1])
					i += 2
				case s[i] == '$':
					v, n, err := expand(s[i:], env)
					if err != nil {
						return nil, err
					}
					cur.WriteString(v)
					i += n
				default:
					cur.WriteByte(s[i])
					i++
				}
			}
			if !closed {
				return nil, fmt.Errorf("unexpected end of statement while looking for matching double-quote in %q", s)
			}
		case c == '$':
			v, n, err := expand(s[i:], env)
			if err != nil {
				return nil, err
			}
			cur.WriteString(v)
			i += n
		default:
			cur.WriteByte(c)
			i++
		}
		inWord = true
	}
	if inWord || !split {
		out = append(out, cur.String())
	}
	return out, nil
}

func isNameByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// expand expands the variable reference at the start of s (s[0] == '$')
// and returns its value and the number of bytes it took.
func expand(s string, env lookup) (string, int, error) {
	if len(s) > 1 && s[1] == '{' {
		end := strings.IndexByte(s, '}')
		if end < 0 {
			return "", 0, fmt.Errorf("missing '}' in %q", s)
		}
		body := s[2:end]
		name, op, word := body, "", ""
		if k := strings.IndexByte(body, ':'); k >= 0 {
			name, op, word = body[:k], body[k:min(k+2, len(body))], body[min(k+2, len(body)):]
			if op != ":-" && op != ":+" {
				return "", 0, fmt.Errorf("unsupported modifier %q in ${%s}", op, body)
			}
		}
		v, set := env(name)
		switch {
		case op == ":-" && v == "", op == ":+" && set && v != "":
			ws, err := words(word, env, false)
			if err != nil {
				return "", 0, err
			}
			v = strings.Join(ws, "")
		case op == ":+":
			v = ""
		}
		return v, end + 1, nil
	}
	j := 1
	for j < len(s) && isNameByte(s[j]) {
		j++
	}
	if j == 1 {
		return "$", 1, nil
	}
	v, _ := env(s[1:j])
	return v, j, nil
}
