package diff_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	goarchive "github.com/moby/go-archive"
	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/internal/oracle"
	"github.com/layercommit/layercommit/unpack"
)

// overlayCase builds lower, mounts an overlay (with extra mount options),
// makes changes through the merged view, and returns the dirs; the merged
// view is copied out before unmounting as the expected tree.
type overlayCase struct {
	lower, upper, merged string
}

func mountCase(t *testing.T, lower, changes []fixtures.Applier, extra ...string) overlayCase {
	t.Helper()
	oracle.Root(t)
	tmp := t.TempDir()
	c := overlayCase{lower: filepath.Join(tmp, "lower"), upper: filepath.Join(tmp, "upper"), merged: filepath.Join(tmp, "expect")}
	if err := os.Mkdir(c.lower, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := fixtures.Apply(c.lower, lower...); err != nil {
		t.Fatal(err)
	}
	ov, err := fixtures.MountOverlay([]string{c.lower}, c.upper, filepath.Join(tmp, "work"), filepath.Join(tmp, "merged"), extra...)
	if err != nil {
		oracle.Missing(t, "overlayfs mount: %v", err)
	}
	defer ov.Unmount()
	if err := fixtures.Apply(ov.Merged, changes...); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(c.merged, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := fixtures.CopyTree(ov.Merged, c.merged); err != nil {
		t.Fatal(err)
	}
	return c
}

// applyAndCompare applies layer onto a copy of lower and compares with want.
func applyAndCompare(t *testing.T, lower, want string, layer []byte) {
	t.Helper()
	tree := filepath.Join(t.TempDir(), "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := fixtures.CopyTree(lower, tree); err != nil {
		t.Fatal(err)
	}
	if _, err := unpack.Apply(context.Background(), tree, bytes.NewReader(layer)); err != nil {
		t.Fatalf("applying the layer: %v", err)
	}
	diffs, err := fixtures.Compare(tree, want, fixtures.CompareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) > 0 {
		t.Fatalf("applied layer differs from the merged view: %s", strings.Join(diffs[:min(5, len(diffs))], "\n"))
	}
}

func smallLower() []fixtures.Applier {
	return []fixtures.Applier{
		fixtures.CreateDir("dir/sub", 0o755),
		fixtures.CreateFile("dir/sub/f", []byte("in a renamed dir\n"), 0o644),
		fixtures.CreateFile("dir/g", []byte("g\n"), 0o644),
		fixtures.CreateFile("file", []byte("data only in the lower\n"), 0o644),
		fixtures.CreateFile("keep", []byte("keep\n"), 0o644),
		fixtures.CreateDir("gone/deep", 0o755),
		fixtures.CreateFile("gone/deep/x", []byte("x"), 0o644),
	}
}

func TestRedirectAndMetacopy(t *testing.T) {
	changes := []fixtures.Applier{
		fixtures.Rename("dir", "dir2"),
		fixtures.CreateFile("dir2/added", []byte("added\n"), 0o600),
		fixtures.Chmod("file", 0o600),
		fixtures.Remove("gone"),
	}
	c := mountCase(t, smallLower(), changes, "redirect_dir=on", "metacopy=on")
	if v, _ := xattr(filepath.Join(c.upper, "dir2"), "trusted.overlay.redirect"); v == "" {
		oracle.Missing(t, "the kernel wrote no redirect xattr")
	}
	if _, err := xattr(filepath.Join(c.upper, "file"), "trusted.overlay.metacopy"); err != nil {
		oracle.Missing(t, "the kernel wrote no metacopy xattr: %v", err)
	}

	_, _, err := diff.Write(context.Background(), io.Discard, diff.Overlay(c.upper))
	if err == nil || !strings.Contains(err.Error(), "dir2") || !strings.Contains(err.Error(), "--lower") {
		t.Fatalf("without lowers: want an error naming dir2 and --lower, got %v", err)
	}
	var buf bytes.Buffer
	if _, _, err := diff.Write(context.Background(), &buf, diff.Overlay(c.upper, diff.WithLowers(c.lower))); err != nil {
		t.Fatal(err)
	}
	applyAndCompare(t, c.lower, c.merged, buf.Bytes())
	// The metacopy file carries the lower's data, not the upper's hole.
	if !strings.Contains(buf.String(), "data only in the lower") {
		t.Error("layer lacks the metacopy file's data")
	}

	// A metacopy file alone (no redirect) also fails without lowers.
	c2 := mountCase(t, smallLower(), []fixtures.Applier{fixtures.Chmod("file", 0o640)}, "redirect_dir=on", "metacopy=on")
	_, _, err = diff.Write(context.Background(), io.Discard, diff.Overlay(c2.upper))
	if err == nil || !strings.Contains(err.Error(), "file") || !strings.Contains(err.Error(), "metacopy") {
		t.Fatalf("metacopy without lowers: want an error naming the file, got %v", err)
	}
}

func xattr(p, name string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// TestNaive diffs a tree against a changed copy without overlay, and checks
// that applying the layer onto the lower gives the changed tree.
func TestNaive(t *testing.T) {
	oracle.Root(t)
	tmp := t.TempDir()
	lower, changed := filepath.Join(tmp, "lower"), filepath.Join(tmp, "changed")
	t0 := time.Unix(1600000000, 0)
	if err := fixtures.Apply(lower, append([]fixtures.Applier{fixtures.CreateDir("", 0o755)}, smallLower()...)...); err != nil {
		t.Fatal(err)
	}
	if err := fixtures.Apply(lower, fixtures.Chtimes("keep", t0, t0), fixtures.Chtimes("file", t0, t0)); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(changed, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := fixtures.CopyTree(lower, changed); err != nil {
		t.Fatal(err)
	}
	if err := fixtures.Apply(changed,
		fixtures.Remove("gone"),
		fixtures.Remove("dir/g"),
		fixtures.CreateFile("dir/sub/new", []byte("new"), 0o644),
		// Same size, same whole-second mtime: only the content tells.
		fixtures.CreateFile("file", []byte("DATA ONLY IN THE LOWER\n"), 0o644),
		fixtures.Chtimes("file", t0, t0),
		fixtures.Symlink("keep", "link"),
		fixtures.Remove("keep"),
		fixtures.CreateDir("keep", 0o700),
	); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, _, err := diff.Write(context.Background(), &buf, diff.Naive(lower, changed, nil)); err != nil {
		t.Fatal(err)
	}
	names := entryNames(t, buf.Bytes())
	want := []string{"dir/", "dir/.wh.g", "dir/sub/", "dir/sub/new", "file", ".wh.gone", "keep/", "link"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("naive entries:\n got  %q\n want %q", names, want)
	}
	applyAndCompare(t, lower, changed, buf.Bytes())
}

func entryNames(t *testing.T, layer []byte) []string {
	t.Helper()
	var names []string
	for _, e := range readLayer(t, layer) {
		names = append(names, e.h.Name)
	}
	return names
}

// TestAufs checks an aufs-style upper dir against moby's own aufs export
// (go-archive with the excludes the aufs driver used).
func TestAufs(t *testing.T) {
	oracle.Root(t)
	upper := t.TempDir()
	if err := fixtures.Apply(upper,
		fixtures.CreateFile(".wh..wh.aufs", nil, 0o444),
		fixtures.CreateDir(".wh..wh.plnk", 0o700),
		fixtures.CreateFile(".wh..wh.plnk/123.456", nil, 0o444),
		fixtures.CreateDir("etc", 0o755),
		fixtures.CreateFile("etc/.wh.motd", nil, 0o444),
		fixtures.CreateFile("etc/hosts", []byte("127.0.0.1 x\n"), 0o644),
		fixtures.CreateDir("opq", 0o755),
		fixtures.CreateFile("opq/.wh..wh..opq", nil, 0o444),
		fixtures.CreateFile("opq/-first", nil, 0o644),
		fixtures.CreateFile("opq/new", nil, 0o644),
	); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	var deletes []string
	err := diff.Changes(context.Background(), diff.Aufs(upper, nil), func(c diff.Change) error {
		if c.Kind == diff.Delete {
			deletes = append(deletes, c.Path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(deletes, " ") != "etc/motd" {
		t.Errorf("aufs deletes: %q", deletes)
	}
	if _, _, err := diff.Write(context.Background(), &got, diff.Aufs(upper, nil), diff.WithCompat(compat.Docker24)); err != nil {
		t.Fatal(err)
	}
	rc, err := goarchive.TarWithOptions(upper, &goarchive.TarOptions{ExcludePatterns: []string{".wh..wh.*", "!.wh..wh..opq"}})
	if err != nil {
		t.Fatal(err)
	}
	want, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	compareTars(t, "aufs vs moby", got.Bytes(), want)
}

func TestEmptyLayer(t *testing.T) {
	oracle.Root(t)
	var buf bytes.Buffer
	id, n, err := diff.Write(context.Background(), &buf, diff.Overlay(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if n != 1024 || !bytes.Equal(buf.Bytes(), make([]byte, 1024)) || id != diff.EmptyDiffID {
		t.Fatalf("empty layer: %d bytes, diffID %s", n, id)
	}
}

// sizeChanger changes a file after the walk has read its size and before
// the writer reads its data.
type sizeChanger struct {
	diff.Source
	name   string
	change func(p string) error
}

func (s sizeChanger) Changes(ctx context.Context, fn diff.ChangeFunc) error {
	return s.Source.Changes(ctx, func(c diff.Change) error {
		if c.Path == s.name {
			if err := s.change(c.Source); err != nil {
				return err
			}
		}
		return fn(c)
	})
}

func TestFileChangesSizeWhileRead(t *testing.T) {
	oracle.Root(t)
	for _, tc := range []struct {
		name   string
		change func(p string) error
	}{
		{"grows", func(p string) error {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteString("more")
			return err
		}},
		{"shrinks", func(p string) error { return os.Truncate(p, 2) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			upper := t.TempDir()
			if err := fixtures.Apply(upper, fixtures.CreateFile("f", []byte("0123456789"), 0o644)); err != nil {
				t.Fatal(err)
			}
			_, _, err := diff.Write(context.Background(), io.Discard, sizeChanger{diff.Overlay(upper), "f", tc.change})
			if !errors.Is(err, diff.ErrSizeChanged) {
				t.Fatalf("want ErrSizeChanged, got %v", err)
			}
		})
	}
}

func TestChainID(t *testing.T) {
	a := diff.EmptyDiffID
	if got := diff.ChainID(nil); got != (v1.Hash{}) {
		t.Errorf("chainID of no layers = %s", got)
	}
	ids := diff.ChainIDs([]v1.Hash{a, a})
	if ids[0] != a {
		t.Errorf("chainID(1) = %s, want the diffID", ids[0])
	}
	// printf 'sha256:5f70...ef sha256:5f70...ef' | sha256sum
	if want := "170b376f64fb30995c140276be3d71dfb256b308d86183ca3b22aa93a79ad548"; ids[1].Hex != want {
		t.Errorf("chainID(2) = %s, want %s", ids[1], want)
	}
	if diff.ChainID([]v1.Hash{a, a}) != ids[1] {
		t.Error("ChainID and ChainIDs disagree")
	}
}

// TestUserXattrOpaque reads opacity from user.overlay.opaque on a
// userxattr mount, and only when asked to.
func TestUserXattrOpaque(t *testing.T) {
	// userxattr refuses redirect_dir=off where the kernel maps off to
	// "follow" (redirect_always_follow); nofollow writes no redirects
	// either.
	c := mountCase(t, smallLower(), []fixtures.Applier{fixtures.Remove("dir"), fixtures.CreateDir("dir", 0o755)}, "userxattr", "redirect_dir=nofollow")
	if v, _ := xattr(filepath.Join(c.upper, "dir"), "user.overlay.opaque"); v != "y" {
		oracle.Missing(t, "the kernel wrote no user.overlay.opaque on a userxattr mount")
	}
	var with, without bytes.Buffer
	if _, _, err := diff.Write(context.Background(), &with, diff.Overlay(c.upper, diff.WithUserXattr())); err != nil {
		t.Fatal(err)
	}
	if _, _, err := diff.Write(context.Background(), &without, diff.Overlay(c.upper)); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(entryNames(t, with.Bytes()), " "); got != "dir/ dir/.wh..wh..opq" {
		t.Errorf("with userxattr: %q", got)
	}
	if got := strings.Join(entryNames(t, without.Bytes()), " "); got != "dir/" {
		t.Errorf("without userxattr: %q", got)
	}
	applyAndCompare(t, c.lower, c.merged, with.Bytes())
}
