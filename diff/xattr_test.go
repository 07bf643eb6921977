package diff

import (
	"errors"
	"reflect"
	"testing"

	"github.com/layercommit/layercommit/compat"
)

func TestParseXattrs(t *testing.T) {
	bad := []struct{ name, in string }{
		{"empty list", ""},
		{"empty item", "user.a,,user.b"},
		{"trailing comma", "user.*,"},
		{"no namespace", "capability"},
		{"leading dot", ".a"},
		{"trailing dot", "user."},
		{"bare star", "*"},
		{"star without dot", "user*"},
		{"star inside", "user.*.x"},
		{"dot star alone", ".*"},
		{"equals sign", "user.a=b"},
		{"space", "user. a"},
		{"NUL", "user.a\x00"},
	}
	for _, c := range bad {
		t.Run("bad/"+c.name, func(t *testing.T) {
			if _, err := ParseXattrs(c.in); !errors.Is(err, ErrXattrPattern) {
				t.Errorf("ParseXattrs(%q) = %v, want ErrXattrPattern", c.in, err)
			}
		})
	}
	good := []struct {
		name, in    string
		match, miss []string
	}{
		{"engine default", "security.capability", []string{"security.capability"}, []string{"security.selinux", "user.a", "security.capability2"}},
		{"all", "all", []string{"user.a", "trusted.b", "security.selinux"}, nil},
		{"prefix", "user.*", []string{"user.a", "user.overlay.x"}, []string{"user", "trusted.user.a", "security.capability"}},
		{"list", "security.capability,user.mime_type,trusted.x.*", []string{"security.capability", "user.mime_type", "trusted.x.y"}, []string{"user.mime", "trusted.x", "trusted.xy"}},
	}
	for _, c := range good {
		t.Run("good/"+c.name, func(t *testing.T) {
			p, err := ParseXattrs(c.in)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range c.match {
				if !p.Match(n) {
					t.Errorf("%q does not match %q", c.in, n)
				}
			}
			for _, n := range c.miss {
				if p.Match(n) {
					t.Errorf("%q matches %q", c.in, n)
				}
			}
			if p.String() != c.in {
				t.Errorf("String() = %q", p.String())
			}
		})
	}
}

// TestKeptXattrs: the header rule over a listing, overlay internals never
// kept whatever the pattern.
func TestKeptXattrs(t *testing.T) {
	listing := []string{"user.b", "trusted.overlay.opaque", "trusted.overlay.origin", "security.capability", "user.overlay.redirect", "trusted.x", "user.a"}
	cases := []struct {
		name, policy, internal string
		want                   []string
	}{
		{"engine default", "security.capability", OverlayXattrPrefix, []string{"security.capability"}},
		{"all", "all", OverlayXattrPrefix, []string{"security.capability", "trusted.x", "user.a", "user.b", "user.overlay.redirect"}},
		{"all on a userxattr overlay", "all", UserOverlayXattrPrefix, []string{"security.capability", "trusted.x", "user.a", "user.b"}},
		{"trusted.* never reaches trusted.overlay.*", "trusted.*", OverlayXattrPrefix, []string{"trusted.x"}},
		{"exact trusted.overlay.opaque is still refused", "trusted.overlay.opaque,user.a", OverlayXattrPrefix, []string{"user.a"}},
		{"user.* on a userxattr overlay", "user.*", UserOverlayXattrPrefix, []string{"user.a", "user.b"}},
		{"naive or aufs source", "all", "", []string{"security.capability", "trusted.x", "user.a", "user.b", "user.overlay.redirect"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := ParseXattrs(c.policy)
			if err != nil {
				t.Fatal(err)
			}
			r := headerRules{xattrs: p}
			got := r.keptXattrs(Change{Capability: "cap", xattrNames: listing, internalPrefix: c.internal})
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("kept %q, want %q", got, c.want)
			}
		})
	}
	t.Run("no capability, engine default", func(t *testing.T) {
		p, _ := ParseXattrs("security.capability")
		r := headerRules{xattrs: p}
		if got := r.keptXattrs(Change{xattrNames: []string{"user.a"}}); got != nil {
			t.Errorf("kept %q", got)
		}
	})
}

// TestOptions: the command-line tar options, checked before any work.
func TestOptions(t *testing.T) {
	noSparse := compat.Docker29
	noSparse.Name, noSparse.NoSparse = "no-sparse-engine", true
	cases := []struct {
		name   string
		p      compat.Profile
		xattrs string
		sparse bool
		err    error
		n      int
	}{
		{"defaults", compat.Docker29, "", false, nil, 0},
		{"both", compat.Docker2010, "all", true, nil, 2},
		{"bad list", compat.Docker29, "user", false, ErrXattrPattern, 0},
		{"sparse refused", noSparse, "", true, ErrSparseUnsupported, 0},
		{"no sparse asked", noSparse, "user.*", false, nil, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts, err := Options(c.p, c.xattrs, c.sparse)
			if !errors.Is(err, c.err) || len(opts) != c.n {
				t.Errorf("%d options, error %v; want %d, %v", len(opts), err, c.n, c.err)
			}
		})
	}
}
