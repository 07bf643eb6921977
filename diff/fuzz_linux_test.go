package diff_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/fixtures"
)

// fuzzNames are the paths fuzzed operations act on.
// Real files named .wh.* are left out: Docker writes them as they are and
// every reader takes them for whiteouts (HOSTILE.md U26).
var fuzzNames = []string{"a", "b", "d", "d/x", "d/y", "d/e", "d/e/z", "b/q", "d/e/..x"}

// fuzzOps decodes ops as triples (kind, name, argument) into appliers that
// ignore their own failures (a rename onto a directory, say).
func fuzzOps(ops []byte) []fixtures.Applier {
	var as []fixtures.Applier
	for i := 0; i+2 < len(ops) && len(as) < 24; i += 3 {
		name := fuzzNames[int(ops[i+1])%len(fuzzNames)]
		arg := ops[i+2]
		other := fuzzNames[int(arg)%len(fuzzNames)]
		var a fixtures.Applier
		switch ops[i] % 8 {
		case 0:
			a = fixtures.CreateFile(name, bytes.Repeat([]byte{'a' + arg%26}, int(arg%7)), 0o644)
		case 1:
			a = fixtures.CreateDir(name, 0o755)
		case 2:
			a = fixtures.Remove(name)
		case 3:
			a = fixtures.Symlink(other, name)
		case 4:
			a = fixtures.Link(other, name)
		case 5:
			a = fixtures.Chmod(name, os.FileMode(0o600|uint32(arg)&0o7077))
		case 6:
			a = fixtures.Rename(name, other)
		case 7:
			a = fixtures.Chown(name, int(arg), int(arg))
		}
		as = append(as, func(root string) error { a(root); return nil })
	}
	return as
}

// FuzzRoundTrip builds a lower tree and changes it through an overlay
// mount, both from fuzzed operations, writes the upper dir as a layer
// and applies it onto the lower: the result must be the merged view.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{1, 2, 0, 0, 3, 1, 0, 0, 9}, []byte{2, 3, 0, 0, 0, 5, 6, 4, 1})
	f.Add([]byte{1, 5, 0, 0, 6, 2, 0, 0, 3}, []byte{2, 5, 0, 1, 5, 0, 0, 6, 4})
	f.Add([]byte{0, 0, 3, 4, 1, 0}, []byte{5, 1, 0o7, 7, 0, 9, 3, 0, 2})
	f.Add([]byte{1, 2, 0, 0, 3, 1}, []byte{2, 2, 0, 1, 2, 0, 0, 4, 1})
	f.Fuzz(func(t *testing.T, lower, changes []byte) {
		c := mountCase(t, fuzzOps(lower), fuzzOps(changes), "redirect_dir=off", "metacopy=off", "index=off")
		var b bytes.Buffer
		if _, _, err := diff.Write(context.Background(), &b, diff.Overlay(c.upper)); err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			t.Fatalf("writing the layer: %v", err)
		}
		applyAndCompare(t, c.lower, c.merged, b.Bytes())
	})
}
