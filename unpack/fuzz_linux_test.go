package unpack

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/internal/oracle"
)

// FuzzUnpack applies arbitrary bytes as a layer onto a small tree with
// symlinks pointing out of it, in both forms and both resolvers. The
// invariant: nothing outside the root changes, and errors are one line.
// The seeds are the TestBreakouts layers.
func FuzzUnpack(f *testing.F) {
	oracle.Root(f)
	for _, c := range breakouts {
		if c.row == "T57" || c.row == "T44" || c.row == "T47" || c.row == "T43" {
			continue // large inputs make slow seeds
		}
		f.Add(c.layer("/victim"), byte(0))
	}
	f.Fuzz(func(t *testing.T, layer []byte, mode byte) {
		tmp := t.TempDir()
		root, victim := filepath.Join(tmp, "root"), filepath.Join(tmp, "victim")
		for _, d := range []string{root, victim} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := fixtures.Apply(victim, fixtures.CreateFile("hello", []byte("hello"), 0o644), fixtures.CreateDir("sub", 0o755)); err != nil {
			t.Fatal(err)
		}
		// Lower-layer links out of the root, absolute and relative.
		if err := fixtures.Apply(root, fixtures.Symlink(victim, "abs"), fixtures.Symlink("../victim", "rel"),
			fixtures.Symlink("/", "slash"), fixtures.CreateDir("d", 0o755), fixtures.Symlink("../..", "d/up")); err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, victim)
		opts := []Option{WithLimits(64<<20, 1000, 64)}
		if mode&1 != 0 {
			opts = append(opts, WithOverlayForm())
		}
		if mode&2 != 0 {
			opts = append(opts, withoutOpenat2())
		}
		_, err := Apply(context.Background(), root, bytes.NewReader(layer), opts...)
		if err != nil && bytes.ContainsRune([]byte(err.Error()), '\n') {
			t.Errorf("error is not one line: %q", err)
		}
		if after := snapshot(t, victim); after != before {
			t.Fatalf("victim changed:\n%s\n---\n%s", before, after)
		}
	})
}
