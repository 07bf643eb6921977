package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/internal/oracle"
	"github.com/layercommit/layercommit/internal/userns/testuser"
	"github.com/layercommit/layercommit/unpack"
)

// overlayModeDockerfile: RUN steps that create, delete, replace a dir of
// the base (opaque) and a file by a dir, chown, chmod (setuid), hard
// and symbolic links, a rename; WORKDIR and COPY; a second stage whose
// tree COPY --from and RUN --mount=from read.
const overlayModeDockerfile = `FROM %[1]s AS tools
RUN mkdir -p /opt/t && echo tool > /opt/t/tool && chmod 755 /opt/t/tool
FROM %[1]s
RUN echo a > /a && mkdir -p /d/e && echo x > /d/e/x && echo y > /d/e/y && rm /etc/keep && rm -r /old && mkdir /old && echo n > /old/n
RUN chown 1500:1501 /a && chmod 4711 /a && ln /a /a-hard && ln -s /a /a-sym && rm /d/e/x && rm /file && mkdir /file && echo in > /file/in
WORKDIR /w
COPY Dockerfile /w/
COPY --from=tools /opt/t /opt/t
RUN --mount=type=bind,from=tools,source=/opt/t,target=/mnt cat /mnt/tool > /from-mount && mv /d/e /d/e2 && mkdir -p /home/u && chown -R 1500:1500 /home/u
`

// overlayModeBase commits a busybox root (with /old/sub, /etc/keep and
// /file to change) into an OCI layout everyone can read.
func overlayModeBase(t *testing.T, bin string) string {
	t.Helper()
	bb := oracle.Tool(t, "busybox")
	dir, err := os.MkdirTemp("", "lcov-base-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	must(t, os.Chmod(dir, 0o755))
	root := filepath.Join(dir, "root")
	must(t, os.Mkdir(root, 0o755))
	must(t, fixtures.Apply(root, fixtures.Busybox(bb), fixtures.CreateDir("etc", 0o755),
		fixtures.CreateFile("etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644),
		fixtures.CreateFile("etc/group", []byte("root:x:0:\n"), 0o644),
		fixtures.CreateFile("etc/keep", []byte("keep\n"), 0o644),
		fixtures.CreateDir("old/sub", 0o755), fixtures.CreateFile("old/sub/f", []byte("f\n"), 0o644),
		fixtures.CreateFile("file", []byte("file\n"), 0o644), fixtures.CreateDir("tmp", 0o1777)))
	ref := "oci:" + filepath.Join(dir, "oci") + ":base"
	testuser.Output(t, exec.Command(bin, "commit", "--upper", root, "--compression", "none", "-q", "-o", ref))
	if out, err := exec.Command("chmod", "-R", "a+rX", dir).CombinedOutput(); err != nil {
		t.Fatalf("chmod: %v: %s", err, out)
	}
	return ref
}

// TestOverlayModes: the same multi-step build with each mechanism forced
// (--overlay, and LAYERCOMMIT_OVERLAY), as root (native, fuse, naive) and
// as an ordinary user with subordinate ids (native, fuse, naive;
// fuse-overlayfs as the user needs /dev/fuse open to users, 0666 as udev
// makes it and scripts/oracles.sh does where there is no udev), gives images
// whose file systems are the same, entry for entry (type, owner, mode,
// content, link target, mtime, dirs' too, and /a-hard still /a's hard
// link): each image's layers applied in order to an empty dir, compared. fuse-overlayfs's layers
// are the kernel overlay's byte for byte (same diffIDs), and the user's
// native and fuse layers root's; a forced mechanism is not reported.
func TestOverlayModes(t *testing.T) {
	oracle.Tool(t, "fuse-overlayfs")
	u := testuser.New(t)
	bin := testuser.Executable(t, binary(t))
	base := overlayModeBase(t, bin)
	ctx := u.Dir(t)
	must(t, os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(strings.ReplaceAll(overlayModeDockerfile, "%[1]s", base)), 0o644))
	build := []string{"build", "--source-date-epoch", "1700000000", "--network", "none", "-q"}
	type result struct{ diffIDs, tree string }
	results := map[string]result{}
	keep := t.TempDir() // the trees outlive the subtests
	for _, tc := range []struct {
		name, mode string
		user, env  bool
	}{
		{"root native", "native", false, false},
		{"root fuse", "fuse", false, false},
		{"root naive", "naive", false, true},
		{"user native", "native", true, false},
		{"user fuse", "fuse", true, false},
		{"user naive", "naive", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.user && tc.mode == "fuse" {
				requireUserDevice(t, "/dev/fuse")
			}
			args := append([]string(nil), build...)
			var env []string
			if tc.env {
				env = []string{"LAYERCOMMIT_OVERLAY=" + tc.mode}
			} else {
				args = append(args, "--overlay", tc.mode)
			}
			var cmd *exec.Cmd
			var out string
			if tc.user {
				// A state dir of its own, as root's: with the user's
				// default one a step cached by an earlier case would run
				// no overlay at all.
				out = filepath.Join(u.Dir(t), "oci")
				cmd = u.Command(env, bin, append(args, "--state-dir", u.Dir(t), "-o", "oci:"+out+":t", ctx)...)
			} else {
				out = filepath.Join(t.TempDir(), "oci")
				cmd = exec.Command(bin, append(args, "--state-dir", t.TempDir(), "-o", "oci:"+out+":t", ctx)...)
				cmd.Env = append(os.Environ(), env...)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if o, err := cmd.Output(); err != nil {
				t.Fatalf("%v\n%s%s", err, o, stderr.String())
			}
			if strings.Contains(stderr.String(), "layercommit: overlay:") {
				t.Errorf("a forced mechanism reported a fallback:\n%s", stderr.String())
			}
			ids, tree := flattenImage(t, out, keep)
			results[tc.name] = result{ids, tree}
		})
	}
	ref := results["root native"]
	if ref.tree == "" {
		t.Fatal("no native build to compare with")
	}
	for name, r := range results {
		if r.tree == "" {
			continue
		}
		diffs, err := fixtures.Compare(r.tree, ref.tree, fixtures.CompareOptions{DirTimes: true})
		must(t, err)
		a, aerr := os.Stat(filepath.Join(r.tree, "a"))
		h, herr := os.Stat(filepath.Join(r.tree, "a-hard"))
		if aerr != nil || herr != nil || !os.SameFile(a, h) {
			t.Errorf("%s: /a-hard is not a hard link of /a (%v, %v)", name, aerr, herr)
		}
		if len(diffs) > 0 {
			t.Errorf("%s's file system differs from root native's:\n%s", name, strings.Join(diffs, "\n"))
		}
		if (name == "root fuse" || name == "user native" || name == "user fuse") && r.diffIDs != ref.diffIDs {
			t.Errorf("%s's layers\n%s\nroot native's\n%s", name, r.diffIDs, ref.diffIDs)
		}
	}
	// The probe: the naive layers differ in bytes (computed whiteouts,
	// no opaque markers) while the file systems are the same.
	if n := results["root naive"]; n.tree != "" && n.diffIDs == ref.diffIDs {
		t.Errorf("the naive layers are the overlay's byte for byte: the comparison does not tell mechanisms apart")
	}
}

// onlyImage is the one image of the OCI layout dir.
func onlyImage(t *testing.T, dir string) v1.Image {
	t.Helper()
	p, err := layout.FromPath(dir)
	must(t, err)
	idx, err := p.ImageIndex()
	must(t, err)
	im, err := idx.IndexManifest()
	must(t, err)
	if len(im.Manifests) != 1 {
		t.Fatalf("%d images in %s", len(im.Manifests), dir)
	}
	img, err := p.Image(im.Manifests[0].Digest)
	must(t, err)
	return img
}

// flattenImage applies the layers of the one image in the OCI layout dir
// to a new dir in tmp and returns its diffIDs and the dir.
func flattenImage(t *testing.T, dir, tmp string) (string, string) {
	t.Helper()
	img := onlyImage(t, dir)
	ls, err := img.Layers()
	must(t, err)
	tree, err := os.MkdirTemp(tmp, "tree-")
	must(t, err)
	var ids []string
	for _, l := range ls {
		d, err := l.DiffID()
		must(t, err)
		ids = append(ids, d.String())
		rc, err := l.Uncompressed()
		must(t, err)
		_, err = unpack.Apply(context.Background(), tree, rc)
		rc.Close()
		must(t, err)
	}
	return strings.Join(ids, "\n"), tree
}

// TestOverlayModeRefused: an unknown mechanism, from --overlay or from
// LAYERCOMMIT_OVERLAY, is one line naming where it came from; nothing is
// built.
func TestOverlayModeRefused(t *testing.T) {
	ctx := t.TempDir()
	must(t, os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM scratch\n"), 0o644))
	out := filepath.Join(t.TempDir(), "oci")
	for _, tc := range []struct {
		name, env string
		args      []string
		want      string
	}{
		{"flag", "", []string{"--overlay", "kernel"}, `layercommit: build: --overlay "kernel": want native, fuse or naive` + "\n"},
		{"env", "aufs", nil, `layercommit: build: LAYERCOMMIT_OVERLAY="aufs": want native, fuse or naive (or unset, for the first that mounts)` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("LAYERCOMMIT_OVERLAY", tc.env)
			_, stderr := lc(t, true, append(append([]string{"build", "-q", "--state-dir", t.TempDir()}, tc.args...), "-o", "oci:"+out+":t", ctx)...)
			if stderr != tc.want {
				t.Errorf("stderr %q, want %q", stderr, tc.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("the refused build wrote %s (%v)", out, err)
			}
		})
	}
}

// TestDiffFuse: diff --fuse --lower of a fuse-overlayfs upper dir writes
// the layer diff writes of the kernel overlay's upper dir after the same
// changes (a dir replaced, a new dir, a delete; times pinned after); without --fuse the
// bytes differ (every new dir opaque, two opaque markers); --fuse with
// another source is one line.
func TestDiffFuse(t *testing.T) {
	oracle.Root(t)
	oracle.Tool(t, "fuse-overlayfs")
	dir := t.TempDir()
	lower := filepath.Join(dir, "lower")
	must(t, os.Mkdir(lower, 0o755))
	must(t, fixtures.Apply(lower, fixtures.CreateDir("d/sub", 0o755), fixtures.CreateFile("d/sub/f", []byte("f\n"), 0o644),
		fixtures.CreateFile("c", []byte("c\n"), 0o644)))
	layers := map[string][]byte{}
	for _, kind := range []string{"kernel", "fuse"} {
		u, w, m := filepath.Join(dir, kind+"-u"), filepath.Join(dir, kind+"-w"), filepath.Join(dir, kind+"-m")
		for _, d := range []string{u, w, m} {
			must(t, os.Mkdir(d, 0o755))
		}
		mount := exec.Command("mount", "-t", "overlay", "overlay", "-o", "lowerdir="+lower+",upperdir="+u+",workdir="+w+",index=off,redirect_dir=off,metacopy=off", m)
		if kind == "fuse" {
			mount = exec.Command("fuse-overlayfs", "-o", "lowerdir="+lower+",upperdir="+u+",workdir="+w, m)
		}
		if out, err := mount.CombinedOutput(); err != nil {
			t.Fatalf("%s mount: %v: %s", kind, err, out)
		}
		sh := exec.Command("sh", "-ec", `cd "$1"; rm -r d; mkdir d; echo n > d/n; mkdir nd; echo x > nd/x; rm c`, "sh", m)
		out, err := sh.CombinedOutput()
		if uerr := exec.Command("umount", m).Run(); uerr != nil {
			t.Fatalf("umount %s: %v", m, uerr)
		}
		if err != nil {
			t.Fatalf("changes: %v: %s", err, out)
		}
		// The two runs' times pinned, so that only the marks can differ.
		if out, err := exec.Command("find", u, "-mindepth", "1", "-exec", "touch", "-h", "-d", "@1000000000", "{}", "+").CombinedOutput(); err != nil {
			t.Fatalf("touch: %v: %s", err, out)
		}
		for _, fuse := range []bool{false, true} {
			if fuse && kind == "kernel" {
				continue
			}
			f := filepath.Join(dir, fmt.Sprintf("%s-%v.tar", kind, fuse))
			args := []string{"diff", "--lower", lower, "-o", f, u}
			if fuse {
				args = append([]string{"diff", "--fuse"}, args[1:]...)
			}
			lc(t, false, args...)
			b, err := os.ReadFile(f)
			must(t, err)
			layers[fmt.Sprintf("%s-%v", kind, fuse)] = b
		}
	}
	if !bytes.Equal(layers["fuse-true"], layers["kernel-false"]) {
		t.Errorf("diff --fuse of fuse-overlayfs's upper is not the kernel upper's layer")
	}
	if bytes.Equal(layers["fuse-false"], layers["kernel-false"]) {
		t.Errorf("fuse-overlayfs's upper read without --fuse gives the kernel's layer: the case does not tell")
	}
	if _, stderr := lc(t, true, "diff", "--fuse", "--source", "naive", "--lower", lower, filepath.Join(dir, "fuse-u")); stderr != "layercommit: diff: --fuse reads an overlay upper dir (--source overlay), not --source naive\n" {
		t.Errorf("--fuse --source naive: stderr %q", stderr)
	}
}
