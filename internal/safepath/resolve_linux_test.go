package safepath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// tree builds a root in t.TempDir from "name" (directory, ending in /),
// "name=content" (file) and "name->target" (symlink) lines, and returns
// it with a victim directory outside it.
func tree(t *testing.T, lines ...string) (root, victim string) {
	t.Helper()
	top := t.TempDir()
	root, victim = filepath.Join(top, "root"), filepath.Join(top, "victim")
	for _, d := range []string{root, victim} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range lines {
		l = strings.ReplaceAll(l, "$VICTIM", victim)
		var err error
		switch {
		case strings.Contains(l, "->"):
			n, target, _ := strings.Cut(l, "->")
			err = os.Symlink(target, filepath.Join(root, n))
		case strings.Contains(l, "="):
			n, data, _ := strings.Cut(l, "=")
			err = os.WriteFile(filepath.Join(root, n), []byte(data), 0o644)
		default:
			err = os.MkdirAll(filepath.Join(root, l), 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return root, victim
}

// chain is n symlinks c1 -> c2 -> ... -> cn -> target.
func chain(n int, target string) []string {
	var out []string
	for i := 1; i < n; i++ {
		out = append(out, fmt.Sprintf("c%d->/c%d", i, i+1))
	}
	return append(out, fmt.Sprintf("c%d->%s", n, target))
}

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		in    string
		want  string // "" when an error is wanted
		err   error
	}{
		{"absolute link", []string{"run/", "var/", "var/run->/run"}, "var/run/x", "run/x", nil},
		{"relative link", []string{"usr/lib/", "lib->usr/lib"}, "lib/x", "usr/lib/x", nil},
		{"last is a link", []string{"etc/", "etc/f=", "l->/etc/f"}, "l", "etc/f", nil},
		{"link to a dir", []string{"run/", "var/", "var/run->/run"}, "var/run", "run", nil},
		{"dangling", []string{"l->/nowhere/deep"}, "l/x", "nowhere/deep/x", nil},
		{"relative dotdot in a moved dir", []string{"run/", "var/", "var/run->/run", "run/up->../top"}, "var/run/up", "top", nil},
		{"absolute escape", []string{"etc/", "l->/etc/../../../..$VICTIM"}, "l/x", "$VICTIM/x", nil},
		{"relative escape", []string{"a/b/", "a/b/l->../../../../../..$VICTIM"}, "a/b/l/x", "$VICTIM/x", nil},
		{"dotdot after missing", []string{"run/", "var/", "var/run->/run"}, "l", "l", nil},
		{"missing then back", []string{"run/", "var/", "var/run->/run", "l->/gone/../var/run"}, "l/x", "run/x", nil},
		{"root", nil, ".", ".", nil},
		{"link to root", []string{"l->/"}, "l", ".", nil},
		{"40 links", chain(40, "/run"), "c1/x", "run/x", nil},
		{"41 links", chain(41, "/run"), "c1/x", "", ErrTooManyLinks},
		{"loop", []string{"a->/b", "b->/a"}, "a/x", "", unix.ELOOP},
		{"file as a dir", []string{"f="}, "f/x", "", unix.ENOTDIR},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, victim := tree(t, tc.lines...)
			r, err := Open(root)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got, err := r.Resolve(tc.in)
			want := strings.TrimPrefix(strings.ReplaceAll(tc.want, "$VICTIM", victim), "/")
			switch {
			case tc.err != nil && !errors.Is(err, tc.err):
				t.Errorf("Resolve(%q) = %q, %v; want error %v", tc.in, got, err, tc.err)
			case tc.err == nil && (err != nil || got != want):
				t.Errorf("Resolve(%q) = %q, %v; want %q", tc.in, got, err, want)
			}
		})
	}
}

// TestMkdirAllFunc: made is called for the directories created (through
// an absolute symlink, inside the root) and only for them, with both
// resolvers; an escaping dangling link creates nothing outside.
func TestMkdirAllFunc(t *testing.T) {
	for _, opts := range [][]Option{nil, {WithoutOpenat2()}} {
		root, victim := tree(t, "run/", "var/", "var/run->/run", "esc->/../../..$VICTIM/made")
		r, err := Open(root, opts...)
		if err != nil {
			t.Fatal(err)
		}
		var made []string
		rec := func(dirfd int, name string) error {
			var st unix.Stat_t
			if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
				t.Errorf("made(%d, %q): not a directory there (%v)", dirfd, name, err)
			}
			made = append(made, name)
			return nil
		}
		for _, n := range []string{"var/run/a/b", "esc/x"} {
			d, err := r.MkdirAllFunc(n, 0o755, rec)
			if err != nil {
				t.Fatal(err)
			}
			d.Close()
		}
		r.Close()
		want := strings.Split(strings.TrimPrefix(victim, "/"), "/")
		want = append([]string{"a", "b"}, append(want, "made", "x")...)
		if strings.Join(made, "/") != strings.Join(want, "/") {
			t.Errorf("made %q, want %q", made, want)
		}
		if _, err := os.Stat(filepath.Join(root, "run/a/b")); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(filepath.Join(root, victim, "made/x")); err != nil {
			t.Error(err)
		}
		if ents, _ := os.ReadDir(victim); len(ents) != 0 {
			t.Errorf("victim directory changed: %v", ents)
		}
	}
}
