package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layercommit/layercommit/internal/oracle"
)

// treeScript prints a container's file system: every path with its type,
// mode, owner and (but for dirs, whose count overlayfs reports as 1 when
// merged) link count, then the md5 of every regular file. The files
// dockerd mounts per container are left out.
const treeScript = `find / -xdev | grep -v -e '^/etc/hosts$' -e '^/etc/hostname$' -e '^/etc/resolv.conf$' -e '^/.dockerenv$' | sort | while read -r p; do stat -c '%n %F %a %u:%g' "$p"; [ -d "$p" ] || stat -c '  links %h' "$p"; done; find / -xdev -type f | grep -v -e '^/etc/hosts$' -e '^/etc/hostname$' -e '^/etc/resolv.conf$' -e '^/.dockerenv$' | sort | xargs md5sum`

// shapedContainer runs a container of d's base that deletes a base file,
// adds files (a hard link pair, a file larger than 64 KiB) and changes a
// base dir, and returns its name and the tree docker commit's image of it
// shows, the view every squash and split of it must show too.
func shapedContainer(t *testing.T, d *oracle.Docker) (name, want string) {
	t.Helper()
	name = fmt.Sprintf("lc-sqc-%d", time.Now().UnixNano())
	d.Run(t, "run", "--name", name, "--network", "none", d.Base, "sh", "-c",
		"rm /etc/group; mkdir -p /app; echo one > /app/one; ln /app/one /app/one-link; "+
			"dd if=/dev/zero of=/app/big bs=1024 count=96 2>/dev/null; echo new > /new.txt; chmod 700 /tmp")
	t.Cleanup(func() { d.Try("rm", "-f", name) })
	ref := oracle.Tag("lc-test/sqc-docker")
	d.Run(t, "commit", name, ref)
	t.Cleanup(func() { d.Try("rmi", "-f", ref) })
	want = d.Run(t, "run", "--rm", "--network", "none", ref, "sh", "-c", treeScript)
	if !strings.Contains(want, "/app/one-link regular file 644 0:0\n  links 2") || strings.Contains(want, "/etc/group ") {
		t.Fatalf("docker commit's image shows an unexpected tree:\n%s", want)
	}
	return name, want
}

// TestCommitContainerSquashDocker: commit --container --squash and
// --max-layer-size on Docker 20.10's and Docker 29's data roots, loaded
// back with docker load: the squash is one layer and one history entry,
// the split several layers, each with an entry; every container of them
// sees docker commit's tree; two commits give one image ID.
func TestCommitContainerSquashDocker(t *testing.T) {
	for _, daemon := range []struct {
		name string
		new  func(testing.TB) *oracle.Docker
	}{{"docker20", oracle.NewDocker}, {"docker29", oracle.NewDocker29}} {
		t.Run(daemon.name, func(t *testing.T) {
			d := daemon.new(t)
			name, want := shapedContainer(t, d)
			baseLayers := len(strings.Fields(d.Run(t, "image", "inspect", "-f", "{{range .RootFS.Layers}}{{.}} {{end}}", d.Base)))
			for _, tc := range []struct {
				name   string
				args   []string
				layers int // 0: more than the base's + 1
			}{
				{"squash", []string{"--squash"}, 1},
				{"split", []string{"--max-layer-size", "64KiB"}, 0},
				{"squash and split", []string{"--squash", "--max-layer-size", "64KiB"}, 0},
			} {
				t.Run(tc.name, func(t *testing.T) {
					var ids []string
					tag := oracle.Tag("lc-test/sqc")
					for i := range 2 {
						out := filepath.Join(t.TempDir(), "c.tar")
						id, _ := lc(t, false, append(append([]string{"commit", "-q", "--docker-root", d.Root, "--container", name,
							"--state-dir", filepath.Join(t.TempDir(), "state"), "--source-date-epoch", "1600000000", "-m", "shaped"}, tc.args...),
							"-o", "docker-archive:"+out+":"+tag)...)
						ids = append(ids, id)
						if i > 0 {
							continue
						}
						checkImage(t, "docker-archive:"+out)
						t.Cleanup(func() { d.Try("rmi", "-f", tag) })
						d.Run(t, "load", "-i", out)
						if got := d.Run(t, "image", "inspect", "-f", "{{.Id}}", tag); got != id {
							t.Fatalf("docker loaded %s, we made %s", got, id)
						}
						n := len(strings.Fields(d.Run(t, "image", "inspect", "-f", "{{range .RootFS.Layers}}{{.}} {{end}}", tag)))
						if tc.layers > 0 && n != tc.layers || tc.layers == 0 && n <= 2 {
							t.Errorf("%d layers, want %d (0: more than 2)", n, tc.layers)
						}
						// Each new layer has a history entry of its own,
						// all alike; with --squash they are the only ones.
						h := strings.Split(d.Run(t, "history", "--format", "{{.Comment}}", tag), "\n")
						shaped := 0
						for _, e := range h {
							if e == "shaped" {
								shaped++
							}
						}
						wantShaped, wantEntries := n-baseLayers, len(h)
						if squash := strings.Contains(strings.Join(tc.args, " "), "--squash"); squash {
							wantShaped, wantEntries = n, n
						}
						if shaped != wantShaped || len(h) != wantEntries {
							t.Errorf("%d layers, history comments:\n%s", n, strings.Join(h, "\n"))
						}
						if got := d.Run(t, "run", "--rm", "--network", "none", tag, "sh", "-c", treeScript); got != want {
							t.Fatalf("container of the image sees:\n%s\nwant (docker commit's):\n%s", got, want)
						}
					}
					if ids[0] != ids[1] {
						t.Fatalf("two commits of the container gave %s and %s", ids[0], ids[1])
					}
				})
			}
		})
	}
}

// TestCommitContainerSquashWriteBack: a squash and a split of a container
// written into the stopped daemon's own data root (docker-root:), which
// the restarted dockerd lists and runs with docker commit's tree.
func TestCommitContainerSquashWriteBack(t *testing.T) {
	d := oracle.StartDaemon(t)
	name, want := shapedContainer(t, &d.Docker)
	d.Stop(t)
	ids := map[string]string{}
	for _, tc := range []struct{ tag, args string }{
		{"sq:1", "--squash"},
		{"split:1", "--max-layer-size 64KiB"},
		{"sqsplit:1", "--squash --max-layer-size 64KiB"},
	} {
		ids[tc.tag], _ = lc(t, false, append(append([]string{"commit", "-q", "--docker-root", d.Root, "--container", name,
			"--state-dir", filepath.Join(t.TempDir(), "state"), "--source-date-epoch", "1600000000"}, strings.Fields(tc.args)...),
			"-o", "docker-root:"+tc.tag)...)
	}
	d.Start(t)
	for tag, id := range ids {
		if listed := d.Run(t, "images", "--no-trunc", "-q", tag); listed != id {
			t.Errorf("docker images lists %q for %s, want %s", listed, tag, id)
		}
		if got := d.Run(t, "run", "--rm", "--network", "none", tag, "sh", "-c", treeScript); got != want {
			t.Errorf("container of %s sees:\n%s\nwant (docker commit's):\n%s", tag, got, want)
		}
	}
	if n := d.Run(t, "image", "inspect", "-f", "{{len .RootFS.Layers}}", "sq:1"); n != "1" {
		t.Errorf("the squash has %s layers", n)
	}
}
