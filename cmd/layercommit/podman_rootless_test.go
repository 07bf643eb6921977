package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/layercommit/layercommit/internal/oracle"
	"github.com/layercommit/layercommit/internal/userns/testuser"
)

// rootlessPodmanScript is what the committed rootless containers run as
// their root: a delete (whiteout), a dir replaced (opaque), a setuid
// file, files and a dir owned by 1500:1501.
const rootlessPodmanScript = `set -e
rm /data/del
rm -r /opq; mkdir /opq; echo n > /opq/n
echo s > /suid; chmod 4755 /suid
echo o > /owned; chown 1500:1501 /owned
mkdir /home; echo f > /home/f; chown -R 1500:1501 /home`

// podmanBaseTar writes a busybox-static root (with /data/del and
// /opq/sub/f for the script to remove) as a tarball podman import takes,
// readable by every user.
func podmanBaseTar(t *testing.T) string {
	t.Helper()
	bb := oracle.Tool(t, "busybox")
	dir, err := os.MkdirTemp("", "lcrl-base-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	must(t, os.Chmod(dir, 0o755))
	root := filepath.Join(dir, "root")
	for _, d := range []string{"bin", "etc", "tmp", "data", "opq/sub", "root"} {
		must(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	b, err := os.ReadFile(bb)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(root, "bin/busybox"), b, 0o755))
	for _, a := range []string{"sh", "rm", "mkdir", "echo", "chmod", "chown", "stat", "ls", "cat", "sleep", "test"} {
		must(t, os.Symlink("busybox", filepath.Join(root, "bin", a)))
	}
	must(t, os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(root, "data/del"), []byte("del\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(root, "opq/sub/f"), []byte("f\n"), 0o644))
	tarball := filepath.Join(dir, "base.tar")
	if out, err := exec.Command("tar", "-C", root, "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	must(t, os.Chmod(tarball, 0o644))
	return tarball
}

// rootlessPodman is Debian's podman 4.3 run by an ordinary user, on its
// default store or on Root/RunRoot, with the overlay driver natively or
// through fuse-overlayfs.
type rootlessPodman struct {
	u             *testuser.User
	Root, RunRoot string // "" for podman's defaults
	fuse          bool
}

func (p *rootlessPodman) args(args ...string) []string {
	g := []string{"--storage-driver", "overlay", "--cgroup-manager", "cgroupfs", "--events-backend", "file"}
	if p.Root != "" {
		g = append(g, "--root", p.Root, "--runroot", p.RunRoot)
	}
	if p.fuse {
		g = append(g, "--storage-opt", "overlay.mount_program=/usr/bin/fuse-overlayfs")
	}
	return append(g, args...)
}

// run runs podman as the user and returns its trimmed stdout.
func (p *rootlessPodman) run(t *testing.T, args ...string) string {
	t.Helper()
	return strings.TrimSpace(testuser.Output(t, p.u.Command(nil, "podman", p.args(args...)...)))
}

// cleanup removes the user's containers and images and ends the
// processes rootless podman left running as the user (its pause
// process, conmon, fuse-overlayfs) so that the user can be removed.
func (p *rootlessPodman) cleanup() {
	p.u.Command(nil, "podman", p.args("rm", "-af", "-t", "0")...).Run()
	p.u.Command(nil, "podman", p.args("rmi", "-af")...).Run()
	// The pause process outlives every container and takes no SIGTERM.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		pids := userProcesses(p.u.UID)
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			if pr, err := os.FindProcess(pid); err == nil {
				pr.Kill()
			}
		}
	}
	// podman's runtime dir (the default run root) and its tmp dir
	// outlive the user.
	for _, d := range []string{"podman-run-%d", "containers-user-%d"} {
		os.RemoveAll(filepath.Join(os.TempDir(), fmt.Sprintf(d, p.u.UID)))
	}
}

// userProcesses lists the processes whose real uid is uid.
func userProcesses(uid int) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" && f[1] == strconv.Itoa(uid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// tarEntry is a layer entry as the tests compare it.
type tarEntry struct {
	Name          string
	Type          byte
	UID, GID      int
	Mode          int64
	Size          int64
	ModTime       int64
	Link, Content string
	Xattrs        map[string]string
}

func (e tarEntry) String() string {
	return fmt.Sprintf("%s %c %d:%d %o %d %d %s %.12s %v", e.Name, e.Type, e.UID, e.GID, e.Mode, e.Size, e.ModTime, e.Link, e.Content, e.Xattrs)
}

// whiteout reports whether e is a whiteout or an opaque marker.
func (e tarEntry) whiteout() bool { return strings.HasPrefix(filepath.Base(e.Name), ".wh.") }

// tarEntries reads a layer tar and returns its sha256 and entries.
func tarEntries(t *testing.T, r io.Reader) (string, []tarEntry) {
	t.Helper()
	h := sha256.New()
	tr := tar.NewReader(io.TeeReader(r, h))
	var out []tarEntry
	for {
		hd, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		b, err := io.ReadAll(tr)
		must(t, err)
		sum := sha256.Sum256(b)
		e := tarEntry{Name: hd.Name, Type: hd.Typeflag, UID: hd.Uid, GID: hd.Gid, Mode: hd.Mode, Size: hd.Size,
			ModTime: hd.ModTime.Unix(), Link: hd.Linkname, Content: hex.EncodeToString(sum[:]), Xattrs: map[string]string{}}
		for k, v := range hd.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				e.Xattrs[x] = v
			}
		}
		out = append(out, e)
	}
	_, err := io.Copy(io.Discard, io.TeeReader(r, h))
	must(t, err)
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), out
}

// ociTopLayer is the diffID and entries of the top layer of the image
// tagged tag in the OCI layout dir.
func ociTopLayer(t *testing.T, dir, tag string) (string, []tarEntry) {
	t.Helper()
	img := checkImage(t, "oci:"+dir+":"+tag)
	ls, err := img.Layers()
	must(t, err)
	rc, err := ls[len(ls)-1].Uncompressed()
	must(t, err)
	defer rc.Close()
	return tarEntries(t, rc)
}

// savedTopLayer is the diffID and entries of the top layer of a podman
// save (docker-archive) tarball.
func savedTopLayer(t *testing.T, path string) (string, []tarEntry) {
	t.Helper()
	layers, _ := oracle.SavedImage(t, "podman save", path)
	return tarEntries(t, bytes.NewReader(layers[len(layers)-1]))
}

// withoutOverlayMarks is es without the user.overlay.* xattrs
// (overlay's own marks, such as user.overlay.origin on a copied-up dir).
func withoutOverlayMarks(es []tarEntry) ([]tarEntry, int) {
	n := 0
	out := make([]tarEntry, len(es))
	for i, e := range es {
		x := map[string]string{}
		for k, v := range e.Xattrs {
			if strings.HasPrefix(k, "user.overlay.") {
				n++
				continue
			}
			x[k] = v
		}
		e.Xattrs = x
		out[i] = e
	}
	return out, n
}

func entryLines(es []tarEntry) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintln(&b, e)
	}
	return b.String()
}

// TestCommitRootlessPodman commits the container of a rootless podman
// (podman run by an ordinary user with subordinate ids, overlay driver
// natively with userxattr, or through fuse-overlayfs) as that user, with
// no sudo: commit --runtime podman --container NAME, on podman's default
// store for the user (~/.local/share/containers/storage) or on --root and
// --runroot given as --storage-root and --run-root.
//
// The layer carries container ids (1500:1501, setuid root), never the
// host's subordinate ids. It is compared with podman commit's by the same
// user, where podman 4.3's layer differs for two reasons, both checked
// here: natively, containers/storage copies the user.* xattrs of the
// upper dir into the tar, overlay's own marks included (user.overlay.origin
// on a copied-up dir: kept in trusted.* as root, and never in a root
// commit's layer); through fuse-overlayfs it diffs naively, writing a
// whiteout for each removed entry instead of an opaque dir, stamped with
// the time of the commit. So the layer must be podman's entries without
// overlay's marks, or (fuse) podman's apart from whiteouts; and, byte for
// byte (same diffID, mtimes clamped by --source-date-epoch), the layer of
// the same script run in root podman's container on the same base,
// committed as root. Then podman, as the user, runs our image written
// into its store (containers-storage:) and shows the owners.
func TestCommitRootlessPodman(t *testing.T) {
	oracle.Tool(t, "podman")
	oracle.Tool(t, "newuidmap")
	base := podmanBaseTar(t)
	const epoch = "1700000000"

	// Root's: the same script in root podman's container on the same
	// base, committed as root with mtimes clamped.
	rp := oracle.NewPodman(t)
	rp.Run(t, "import", "-q", base, "localhost/lcrl-base:1")
	rp.Run(t, append(append([]string{"run", "--name", "lcrl"}, oracle.RunFlags...), "localhost/lcrl-base:1", "sh", "-c", rootlessPodmanScript)...)
	rootDir := filepath.Join(t.TempDir(), "oci")
	lc(t, false, "commit", "--runtime", "podman", "--storage-root", rp.Root, "--run-root", rp.RunRoot, "--container", "lcrl",
		"--source-date-epoch", epoch, "-q", "-o", "oci:"+rootDir+":root")
	rootID, rootEntries := ociTopLayer(t, rootDir, "root")

	for _, tc := range []struct {
		name string
		fuse bool
		// store gives podman --root/--runroot and us --storage-root and
		// --run-root; else both use the user's default store.
		store bool
	}{
		{"native overlay, default store", false, false},
		{"fuse-overlayfs, --root", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fuse {
				requireUserDevice(t, "/dev/fuse")
			}
			u := testuser.New(t)
			bin := testuser.Executable(t, binary(t))
			p := &rootlessPodman{u: u, fuse: tc.fuse}
			var where []string
			if tc.store {
				d := u.Dir(t)
				p.Root, p.RunRoot = filepath.Join(d, "root"), filepath.Join(d, "run")
				where = []string{"--storage-root", p.Root, "--run-root", p.RunRoot}
			}
			t.Cleanup(p.cleanup)
			p.run(t, "import", "-q", base, "localhost/lcrl-base:1")
			p.run(t, append(append([]string{"run", "--name", "lcrl"}, oracle.RunFlags...), "localhost/lcrl-base:1", "sh", "-c", rootlessPodmanScript)...)
			if got := p.run(t, "info", "--format", "{{.Store.GraphRoot}} {{index .Store.GraphStatus \"Native Overlay Diff\"}}"); tc.store && !strings.HasPrefix(got, p.Root+" ") ||
				!tc.store && !strings.HasPrefix(got, filepath.Join(u.Home, ".local/share/containers/storage")+" ") || strings.HasSuffix(got, " true") == tc.fuse {
				t.Fatalf("podman info says %q", got)
			}

			// podman commit by the user, and ours.
			p.run(t, "commit", "-q", "lcrl", "localhost/podman-commit:1")
			saved := filepath.Join(u.Dir(t), "saved.tar")
			p.run(t, "save", "-q", "--format", "docker-archive", "-o", saved, "localhost/podman-commit:1")
			_, podmanEntries := savedTopLayer(t, saved)
			out := u.Dir(t)
			commit := append([]string{"commit", "--runtime", "podman", "--container", "lcrl", "-q"}, where...)
			testuser.Output(t, u.Command(nil, bin, append(commit, "-o", "oci:"+out+":ours")...))
			_, ours := ociTopLayer(t, out, "ours")
			if tc.fuse {
				keep := func(es []tarEntry) []tarEntry {
					return slices.DeleteFunc(slices.Clone(es), tarEntry.whiteout)
				}
				pe, _ := withoutOverlayMarks(podmanEntries)
				if got, want := entryLines(keep(ours)), entryLines(keep(pe)); got != want {
					t.Errorf("entries other than whiteouts differ from podman commit's:\nours:\n%spodman's:\n%s", got, want)
				}
				var wh []string
				for _, e := range podmanEntries {
					if e.whiteout() {
						wh = append(wh, e.Name)
					}
				}
				if !slices.Equal(wh, []string{"data/.wh.del", "opq/.wh.sub"}) {
					t.Errorf("podman's naive diff has whiteouts %v, want data/.wh.del and opq/.wh.sub (the case no longer tells)", wh)
				}
			} else {
				pe, marks := withoutOverlayMarks(podmanEntries)
				if got, want := entryLines(ours), entryLines(pe); got != want {
					t.Errorf("layer differs from podman commit's (overlay's user.overlay.* marks left out):\nours:\n%spodman's:\n%s", got, want)
				}
				if marks == 0 {
					t.Errorf("podman's rootless layer has no user.overlay.* xattrs: it should then be ours byte for byte")
				}
			}
			for _, want := range []string{"owned 0 1500:1501 100644", "suid 0 0:0 104755", "home/ 5 1500:1501", "home/f 0 1500:1501", "opq/.wh..wh..opq 0 0:0", "data/.wh.del 0 0:0"} {
				if !strings.Contains("\n"+entryLines(ours), "\n"+want+" ") {
					t.Errorf("no entry %q in our layer:\n%s", want, entryLines(ours))
				}
			}

			// Byte for byte root's, mtimes clamped.
			testuser.Output(t, u.Command(nil, bin, append(commit, "--source-date-epoch", epoch, "-o", "oci:"+out+":epoch")...))
			if id, es := ociTopLayer(t, out, "epoch"); id != rootID {
				t.Errorf("layer %s with mtimes clamped, root's %s\nours:\n%sroot's:\n%s", id, rootID, entryLines(es), entryLines(rootEntries))
			}

			// Into the user's store; podman runs it as the user.
			testuser.Output(t, u.Command(nil, bin, append(commit, "-o", "containers-storage:localhost/ours:1")...))
			got := p.run(t, append(append([]string{"run", "--rm"}, oracle.RunFlags...), "localhost/ours:1", "sh", "-c",
				"stat -c '%n %u:%g %a' /owned /suid /home /home/f; ls /opq; test -e /data/del || echo deleted")...)
			if want := "/owned 1500:1501 644\n/suid 0:0 4755\n/home 1500:1501 755\n/home/f 1500:1501 644\nn\ndeleted"; got != want {
				t.Errorf("podman run of our image printed\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// requireUserDevice skips (fails under LAYERCOMMIT_REQUIRE_ORACLES=1)
// unless every user may open the device node dev, as udev makes
// /dev/fuse and /dev/net/tun on a standard Debian host
// (scripts/oracles.sh does it where there is no udev).
func requireUserDevice(t *testing.T, dev string) {
	t.Helper()
	fi, err := os.Stat(dev)
	if err != nil {
		oracle.Missing(t, "%s: %v", dev, err)
		return
	}
	if fi.Mode()&os.ModeCharDevice == 0 || fi.Mode().Perm()&0o006 != 0o006 {
		oracle.Missing(t, "%s is %v: an ordinary user cannot open it (udev makes it 0666; . scripts/oracles.sh && oracles_up does too)", dev, fi.Mode())
	}
}

// TestCommitRootlessPodmanBadInput: as the user, a store it cannot read
// and a container its store lacks are one line each.
func TestCommitRootlessPodmanBadInput(t *testing.T) {
	oracle.Tool(t, "podman")
	u := testuser.New(t)
	bin := testuser.Executable(t, binary(t))
	p := &rootlessPodman{u: u}
	t.Cleanup(p.cleanup)
	p.run(t, "import", "-q", podmanBaseTar(t), "localhost/lcrl-base:1")
	p.run(t, append(append([]string{"create", "--name", "lcrl"}, oracle.RunFlags...), "localhost/lcrl-base:1", "true")...)
	// A store of root's that the user may not enter.
	closed := filepath.Join(t.TempDir(), "closed")
	must(t, os.MkdirAll(filepath.Join(closed, "overlay-containers"), 0o700))
	must(t, os.Chmod(filepath.Dir(closed), 0o755))
	must(t, os.Chmod(closed, 0o700))
	store := filepath.Join(u.Home, ".local/share/containers/storage")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no such container", []string{"--container", "nosuch"}, `layercommit: not found: no container "nosuch" in ` + store},
		{"unreadable store", []string{"--container", "lcrl", "--storage-root", closed}, "layercommit: reading the store " + closed + ": stat " + closed + "/overlay-containers/containers.json: permission denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := u.Command(nil, bin, append([]string{"commit", "--runtime", "podman", "-q", "-o", "oci:" + filepath.Join(u.Home, "out") + ":x"}, tc.args...)...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Run(); err == nil {
				t.Fatal("commit succeeded")
			}
			if got := stderr.String(); got != tc.want+"\n" {
				t.Errorf("stderr %q, want %q", got, tc.want+"\n")
			}
			if _, err := os.Stat(filepath.Join(u.Home, "out")); err == nil {
				t.Errorf("the failed commit wrote its destination")
			}
		})
	}
}
