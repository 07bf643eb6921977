package diff

import (
	"context"
	"reflect"
	"strings"
	"testing"
)

// listSource is a change set given as paths: "d:" directories, "-"
// deletes, others files.
type listSource []string

func (l listSource) Changes(_ context.Context, fn ChangeFunc) error {
	for _, p := range l {
		c := Change{Kind: Add, Path: p, Info: Info{Mode: sIFREG | 0o644}}
		switch {
		case strings.HasPrefix(p, "d:"):
			c.Path, c.Info.Mode = p[2:], sIFDIR|0o755
		case strings.HasPrefix(p, "-"):
			c.Path, c.Kind, c.Info = p[1:], Delete, Info{}
		}
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}

func TestExclude(t *testing.T) {
	src := listSource{"d:etc", "etc/hosts", "etc/passwd", "d:tmp", "d:tmp/cache", "tmp/cache/a", "tmp/cache/keep", "tmp/x.log", "-var/old", "y.log"}
	cases := []struct {
		name     string
		patterns []string
		want     []string
		err      string
	}{
		{"none", nil, []string{"etc", "etc/hosts", "etc/passwd", "tmp", "tmp/cache", "tmp/cache/a", "tmp/cache/keep", "tmp/x.log", "-var/old", "y.log"}, ""},
		{"a file", []string{"etc/hosts"}, []string{"etc", "etc/passwd", "tmp", "tmp/cache", "tmp/cache/a", "tmp/cache/keep", "tmp/x.log", "-var/old", "y.log"}, ""},
		{"a dir and all below", []string{"/tmp"}, []string{"etc", "etc/hosts", "etc/passwd", "-var/old", "y.log"}, ""},
		{"wildcards at any depth", []string{"**/*.log"}, []string{"etc", "etc/hosts", "etc/passwd", "tmp", "tmp/cache", "tmp/cache/a", "tmp/cache/keep", "-var/old"}, ""},
		{"re-include below an excluded dir writes its parents", []string{"tmp", "!tmp/cache/keep"}, []string{"etc", "etc/hosts", "etc/passwd", "tmp", "tmp/cache", "tmp/cache/keep", "-var/old", "y.log"}, ""},
		{"an excluded delete drops its whiteout", []string{"var"}, []string{"etc", "etc/hosts", "etc/passwd", "tmp", "tmp/cache", "tmp/cache/a", "tmp/cache/keep", "tmp/x.log", "y.log"}, ""},
		{"bad pattern", []string{"["}, nil, "bad --exclude pattern"},
		{"empty pattern", []string{" "}, nil, "empty --exclude pattern"},
		{"the root", []string{"/"}, nil, "names the root"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ex, err := Exclude(src, tc.patterns)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			err = ex.Changes(context.Background(), func(c Change) error {
				p := c.Path
				if c.Kind == Delete {
					p = "-" + p
				}
				got = append(got, p)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}
