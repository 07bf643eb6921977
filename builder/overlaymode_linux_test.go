package builder

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/internal/oracle"
	"github.com/layercommit/layercommit/internal/overlay"
	"github.com/layercommit/layercommit/unpack"
)

const fallbackDockerfile = `FROM base
RUN echo a > /a && rm /etc/keep && mkdir -p /d && echo d > /d/f && ln /a /a2
WORKDIR /w
COPY f /w/f
COPY --from=base /bin/sh /w/sh
RUN --mount=type=bind,from=base,source=/etc,target=/mnt cat /mnt/passwd > /w/passwd && rm /d/f && chmod 700 /d
`

// TestOverlayFallback: where the kernel refuses every overlay the build
// mounts (an option it does not know added to each, so that the kernel
// itself refuses), the build says so in one line and uses
// fuse-overlayfs, giving the image of the kernel's overlay (same ID);
// where fuse-overlayfs is missing too, one line names both refusals and
// the build copies the root (naive), giving an image of the same file
// system (its own layer bytes). The kernel's overlay reports nothing.
func TestOverlayFallback(t *testing.T) {
	oracle.Tool(t, overlay.FuseProgram)
	base := busyboxImage(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": fallbackDockerfile, "f": "data\n"})
	epoch := int64(1700000000)
	var trees []string
	run := func(t *testing.T) (string, string) {
		t.Helper()
		var notice bytes.Buffer
		out := filepath.Join(t.TempDir(), "oci")
		id, err := testBuild(t, Options{ContextDir: ctxDir, StateDir: t.TempDir(), SourceDateEpoch: &epoch, Network: "none",
			BuildContexts: map[string]string{"base": base}, Notice: &notice}, "oci:"+out+":t")
		if err != nil {
			t.Fatalf("build: %v", err)
		}
		trees = append(trees, layoutTree(t, out))
		return id.String(), notice.String()
	}
	nativeID, n := run(t)
	if n != "" {
		t.Errorf("the kernel's overlay reported %q", n)
	}

	nativeExtra = []string{"lc_refused_option"}
	t.Cleanup(func() { nativeExtra = nil })
	fuseID, n := run(t)
	const fuseLine = "layercommit: overlay: the kernel's overlayfs cannot mount here ("
	if strings.Count(n, "\n") != 1 || !strings.HasPrefix(n, fuseLine) || !strings.Contains(n, "lc_refused_option") ||
		!strings.HasSuffix(n, "): RUN and COPY use fuse-overlayfs (--overlay to choose)\n") {
		t.Errorf("the fallback to fuse-overlayfs reported %q", n)
	}
	if fuseID != nativeID {
		t.Errorf("on fuse-overlayfs the image is %s, on the kernel's overlay %s", fuseID, nativeID)
	}

	t.Setenv("PATH", t.TempDir()) // no fuse-overlayfs
	naiveID, n := run(t)
	const naiveLine = "layercommit: overlay: neither the kernel's overlayfs ("
	if strings.Count(n, "\n") != 1 || !strings.HasPrefix(n, naiveLine) || !strings.Contains(n, "nor fuse-overlayfs (fuse-overlayfs is not installed (Debian package fuse-overlayfs))") ||
		!strings.HasSuffix(n, "can mount here: RUN and COPY use naive copies of the root, diffed (--overlay to choose)\n") {
		t.Errorf("the fallback to naive copies reported %q", n)
	}
	if naiveID == nativeID {
		t.Errorf("the naive image is the overlay's byte for byte: the case does not tell")
	}
	for i, name := range []string{"fuse-overlayfs", "naive"} {
		diffs, err := fixtures.Compare(trees[i+1], trees[0], fixtures.CompareOptions{DirTimes: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(diffs) > 0 {
			t.Errorf("the %s image's file system differs from the kernel overlay's:\n%s", name, strings.Join(diffs, "\n"))
		}
	}
}

// layoutTree applies the layers of the one image in the OCI layout dir
// to a new dir and returns it.
func layoutTree(t *testing.T, dir string) string {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("index of %s: %v", dir, err)
	}
	img, err := p.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	tree := t.TempDir()
	for _, l := range ls {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		_, err = unpack.Apply(t.Context(), tree, rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return tree
}
