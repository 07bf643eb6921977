package main

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/layercommit/layercommit/internal/oracle"
	"github.com/layercommit/layercommit/internal/userns/testuser"
)

// rootlessChanges is run in a shell over an overlay of $L mounted at $M
// (upper $U, work $W) with options $O: a delete (whiteout), a dir
// replaced (opaque), a setuid file, a file owned by 1500:1501 and a file
// capability.
const rootlessChanges = `set -e
mount -t overlay overlay -o "lowerdir=$L,upperdir=$U,workdir=$W,$O" "$M"
rm "$M/file"
rm -r "$M/dir"; mkdir "$M/dir"; echo new > "$M/dir/n"
echo s > "$M/suid"; chmod 4755 "$M/suid"
echo o > "$M/owned"; chown 1500:1501 "$M/owned"
mkdir "$M/home"; chown 1500:1501 "$M/home"; echo h > "$M/home/f"; chown 1500:1501 "$M/home/f"
cp "$M/tool" "$M/capped"; setcap cap_net_raw+ep "$M/capped"
umount "$M"
`

// rootlessLower makes the lower tree of rootlessChanges in dir.
func rootlessLower(t *testing.T, dir string, uid, gid int) map[string]string {
	t.Helper()
	env := map[string]string{"L": filepath.Join(dir, "lower"), "U": filepath.Join(dir, "upper"), "W": filepath.Join(dir, "work"), "M": filepath.Join(dir, "merged")}
	for _, k := range []string{"L", "U", "W", "M"} {
		must(t, os.MkdirAll(env[k], 0o755))
	}
	must(t, os.MkdirAll(filepath.Join(env["L"], "dir", "sub"), 0o755))
	must(t, os.WriteFile(filepath.Join(env["L"], "dir", "sub", "old"), []byte("old\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(env["L"], "file"), []byte("file\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(env["L"], "tool"), []byte("#!/bin/sh\n"), 0o755))
	if out, err := exec.Command("chown", "-R", fmt.Sprintf("%d:%d", uid, gid), dir).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v: %s", err, out)
	}
	return env
}

// layerEntries lists the one layer of the image tagged tag in the OCI
// layout dir: each entry's name, type, owner, mode, xattrs and size.
func layerEntries(t *testing.T, dir, tag string) (string, []string) {
	t.Helper()
	p, err := layout.FromPath(dir)
	must(t, err)
	idx, err := p.ImageIndex()
	must(t, err)
	im, err := idx.IndexManifest()
	must(t, err)
	for _, d := range im.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] != tag {
			continue
		}
		img, err := p.Image(d.Digest)
		must(t, err)
		ls, err := img.Layers()
		must(t, err)
		if len(ls) != 1 {
			t.Fatalf("%d layers", len(ls))
		}
		diffID, err := ls[0].DiffID()
		must(t, err)
		rc, err := ls[0].Uncompressed()
		must(t, err)
		defer rc.Close()
		var out []string
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			must(t, err)
			var xs []string
			for k, v := range h.PAXRecords {
				if strings.HasPrefix(k, "SCHILY.xattr.") {
					xs = append(xs, fmt.Sprintf("%s=%x", k, v))
				}
			}
			sort.Strings(xs)
			out = append(out, fmt.Sprintf("%s %c %d:%d %o %d %s", h.Name, h.Typeflag, h.Uid, h.Gid, h.Mode, h.Size, strings.Join(xs, ",")))
		}
		return diffID.String(), out
	}
	t.Fatalf("no image %s in %s", tag, dir)
	return "", nil
}

// TestRootlessCommitUpper: an ordinary user with subordinate ids mounts
// an overlay (userxattr) in its own user namespace with rootless
// podman's mapping (util-linux unshare), makes changes there (a
// whiteout, an opaque dir, setuid, chown 1500:1501, a file capability),
// and commits the upper dir with no sudo: commit --upper --userxattr.
// The layer is byte for byte (same diffID) the one root commits from the
// same changes made through a root overlay: container ids, not the
// host's subordinate ids, root's files at 0, the setuid bit and the
// capability kept. The user's default state dir (its local: store) is
// under ~/.local/share/layercommit, or $XDG_DATA_HOME/layercommit.
func TestRootlessCommitUpper(t *testing.T) {
	oracle.Tool(t, "unshare")
	oracle.Tool(t, "setcap")
	u := testuser.New(t)
	bin := testuser.Executable(t, binary(t))
	const epoch = "1700000000"

	// Root: the same changes through a root overlay, committed as root.
	rootDir := t.TempDir()
	renv := rootlessLower(t, rootDir, 0, 0)
	sh := exec.Command("sh", "-c", rootlessChanges)
	sh.Env = append(os.Environ(), "O=index=off,redirect_dir=off,metacopy=off")
	for k, v := range renv {
		sh.Env = append(sh.Env, k+"="+v)
	}
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("root's changes: %v: %s", err, out)
	}
	rootOCI := filepath.Join(rootDir, "oci")
	testuser.Output(t, exec.Command(bin, "commit", "--upper", renv["U"], "--source-date-epoch", epoch, "-o", "oci:"+rootOCI+":root"))
	rootID, rootEntries := layerEntries(t, rootOCI, "root")

	// The user: its own namespace and mount, then layercommit with no
	// privileges.
	userDir := u.Dir(t)
	uenv := rootlessLower(t, userDir, u.UID, u.GID)
	m := fmt.Sprintf("%d,1,%d", u.SubID, testuser.Count)
	env := []string{"O=index=off,redirect_dir=nofollow,metacopy=off,userxattr"}
	for k, v := range uenv {
		env = append(env, k+"="+v)
	}
	testuser.Output(t, u.Command(env, "unshare", "--user", "--mount", "--map-user=0", "--map-group=0",
		"--map-users="+m, "--map-groups="+m, "sh", "-c", rootlessChanges))
	userOCI := filepath.Join(userDir, "oci")
	out := testuser.Output(t, u.Command(nil, bin, "commit", "--upper", uenv["U"], "--userxattr", "--source-date-epoch", epoch, "-o", "oci:"+userOCI+":user"))
	userID, userEntries := layerEntries(t, userOCI, "user")
	if userID != rootID {
		t.Errorf("rootless layer %s, root's %s\nrootless:\n%s\nroot's:\n%s", userID, rootID, strings.Join(userEntries, "\n"), strings.Join(rootEntries, "\n"))
	}
	for _, want := range []string{"owned 0 1500:1501 644", "suid 0 0:0 4755", "home/f 0 1500:1501", "dir/.wh..wh..opq 0 0:0", ".wh.file 0 0:0", "capped 0 0:0 755 10 SCHILY.xattr.security.capability="} {
		found := false
		for _, e := range userEntries {
			found = found || strings.HasPrefix(e, want)
		}
		if !found {
			t.Errorf("no entry %q in the rootless layer:\n%s", want, strings.Join(userEntries, "\n"))
		}
	}
	if !strings.HasPrefix(strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]), "sha256:") {
		t.Errorf("commit printed %q, want the image ID last", out)
	}

	// The local store: under the user's home, or XDG_DATA_HOME.
	testuser.Output(t, u.Command(nil, bin, "commit", "--upper", uenv["U"], "--userxattr", "-t", "rl:home"))
	xdg := filepath.Join(u.Dir(t), "xdg")
	testuser.Output(t, u.Command([]string{"XDG_DATA_HOME=" + xdg}, bin, "commit", "--upper", uenv["U"], "--userxattr", "-t", "rl:xdg"))
	for _, tc := range []struct {
		env  []string
		dir  string
		want string
	}{
		{nil, filepath.Join(u.Home, ".local/share/layercommit"), "home"},
		{[]string{"XDG_DATA_HOME=" + xdg}, filepath.Join(xdg, "layercommit"), "xdg"},
	} {
		var tags []string
		for _, l := range strings.Split(testuser.Output(t, u.Command(tc.env, bin, "images")), "\n")[1:] {
			if f := strings.Fields(l); len(f) > 2 {
				tags = append(tags, f[0]+":"+f[1])
			}
		}
		if len(tags) != 1 || tags[0] != "rl:"+tc.want {
			t.Errorf("images with %v lists %v, want rl:%s alone", tc.env, tags, tc.want)
		}
		fi, err := os.Stat(filepath.Join(tc.dir, "images", "index.json"))
		if err != nil {
			t.Errorf("the store is not in %s: %v", tc.dir, err)
		} else if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != u.UID {
			t.Errorf("%s/images/index.json is owned by %d, want the user %d", tc.dir, st.Uid, u.UID)
		}
	}
}

// TestRootlessRefused: a user without subordinate ids gets one line
// naming the cause and both fixes, and runs with --userns=single (or
// LAYERCOMMIT_USERNS=single) mapping only itself; a bad mode is one line.
func TestRootlessRefused(t *testing.T) {
	u := testuser.New(t, testuser.WithoutSubIDs())
	bin := testuser.Executable(t, binary(t))
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"no subordinate ids", nil, []string{"images"}, 1, "layercommit: rootless: no subordinate ids: user " + u.Name + " has no range in /etc/subuid: add a range as root (usermod --add-subuids 100000-165535 --add-subgids 100000-165535 " + u.Name + ") or map only yourself with --userns=single"},
		{"bad mode", nil, []string{"--userns=keep-id", "images"}, 2, `layercommit: rootless: unknown user namespace mode "keep-id" (want subids, single or host)`},
		{"bad env mode", []string{"LAYERCOMMIT_USERNS=auto"}, []string{"images"}, 2, `layercommit: LAYERCOMMIT_USERNS: rootless: unknown user namespace mode "auto" (want subids, single or host)`},
		{"single", nil, []string{"--userns=single", "images"}, 0, ""},
		{"single from env", []string{"LAYERCOMMIT_USERNS=single"}, []string{"images"}, 0, ""},
		{"host", nil, []string{"--userns", "host", "images"}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := u.Command(tc.env, bin, tc.args...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || strings.TrimSpace(stderr.String()) != tc.want {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, stderr.String(), tc.code, tc.want)
			}
		})
	}
}
