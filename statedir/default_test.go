package statedir

import (
	"os/user"
	"testing"
)

// TestUserDefault: an ordinary user's state dir is under
// $XDG_DATA_HOME when that is absolute, else under ~/.local/share, with ~
// from HOME or else the passwd entry; never under /var/lib.
func TestUserDefault(t *testing.T) {
	root, err := user.LookupId("0")
	if err != nil {
		t.Skip("no passwd entry for uid 0")
	}
	for _, tc := range []struct {
		name, xdg, home string
		want            string
	}{
		{"xdg", "/data/u", "/home/u", "/data/u/layercommit"},
		{"home", "", "/home/u", "/home/u/.local/share/layercommit"},
		{"relative xdg ignored", "data", "/home/u", "/home/u/.local/share/layercommit"},
		{"no home: passwd", "", "", root.HomeDir + "/.local/share/layercommit"},
		{"relative home: passwd", "", "home", root.HomeDir + "/.local/share/layercommit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := userDefault(tc.xdg, tc.home, 0, "layercommit"); got != tc.want {
				t.Fatalf("userDefault(%q, %q) = %q, want %q", tc.xdg, tc.home, got, tc.want)
			}
		})
	}
	if got := userDefault("", "", 1<<30, "layercommit"); got != "" {
		t.Fatalf("a uid without passwd entry and no HOME got %q, want none", got)
	}
	if _, err := Open(""); err == nil {
		t.Fatal("Open(\"\") made a state dir in the working dir")
	}
}
