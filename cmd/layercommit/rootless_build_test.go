package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layercommit/layercommit/internal/oracle"
	"github.com/layercommit/layercommit/internal/userns/testuser"
)

// debianBase imports $LAYERCOMMIT_DEBIAN_TAR (a mmdebstrap minbase
// rootfs) as one layer into an OCI layout everyone can read, and returns
// its reference.
func debianBase(t *testing.T, bin string) string {
	t.Helper()
	tarball := os.Getenv("LAYERCOMMIT_DEBIAN_TAR")
	if tarball == "" {
		oracle.Missing(t, "LAYERCOMMIT_DEBIAN_TAR is not set (scripts/oracles.sh makes it)")
	}
	dir, err := os.MkdirTemp("", "lcrl-debian-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	must(t, os.Chmod(dir, 0o755))
	rootfs := filepath.Join(dir, "rootfs")
	must(t, os.Mkdir(rootfs, 0o755))
	if out, err := exec.Command("tar", "-xpf", tarball, "-C", rootfs, "--xattrs", "--numeric-owner").CombinedOutput(); err != nil {
		t.Fatalf("unpacking %s: %v: %s", tarball, err, out)
	}
	ref := "oci:" + filepath.Join(dir, "oci") + ":bookworm"
	testuser.Output(t, exec.Command(bin, "commit", "--upper", rootfs, "--compression", "none", "-q", "-o", ref))
	must(t, os.RemoveAll(rootfs))
	if out, err := exec.Command("chmod", "-R", "a+rX", dir).CombinedOutput(); err != nil {
		t.Fatalf("chmod: %v: %s", err, out)
	}
	return ref
}

// rootlessDockerfile is a multi-stage build on Debian: a user made with
// useradd -u 1500, chown, COPY --chown, a setuid file and a file
// capability (set with the host's setcap, copied in), and COPY --from of
// them into a second stage.
const rootlessDockerfile = `FROM %[1]s AS tools
RUN echo made > /made && chown 1500:1501 /made && chmod 4711 /made
FROM %[1]s
COPY setcap getcap /usr/local/sbin/
RUN useradd -u 1500 -m app && echo data > /srv-data && chown app:app /srv-data \
 && cp /usr/bin/true /usr/local/bin/suid && chmod 4755 /usr/local/bin/suid \
 && cp /usr/bin/true /usr/local/bin/capped && setcap cap_net_bind_service+ep /usr/local/bin/capped
COPY --from=tools /made /opt/made-reset
COPY --from=tools --chown=app:app /made /opt/made-chown
COPY --chown=1500:1500 Dockerfile /app-file
RUN mkdir /owned && touch /owned/f && chown -R app:app /owned && chmod 2750 /owned
`

// rootlessReport is what the test asks each image (run in dockerd).
const rootlessReport = `stat -c '%n %u:%g %a' /srv-data /usr/local/bin/suid /usr/local/bin/capped /opt/made-reset /opt/made-chown /app-file /owned /owned/f /home/app /etc/shadow; /usr/local/sbin/getcap /usr/local/bin/capped; id app`

// TestRootlessBuild: the multi-stage Debian build run by an ordinary
// user with subordinate ids (no sudo, its default state dir) and by root
// gives the same layers (same diffIDs, with --source-date-epoch), and
// both images, loaded into the real dockerd and run, show the same
// owners, modes and capabilities: 1500 for useradd's user, chown and
// COPY --chown (also --from another stage), 0 for root's files and for
// COPY --from without --chown, the setuid and setgid bits, and
// cap_net_bind_service=ep set by a RUN.
func TestRootlessBuild(t *testing.T) {
	d := oracle.NewDocker(t)
	u := testuser.New(t)
	bin := testuser.Executable(t, binary(t))
	base := debianBase(t, bin)
	ctx, err := os.MkdirTemp("", "lcrl-ctx-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(ctx) })
	must(t, os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(fmt.Sprintf(rootlessDockerfile, base)), 0o644))
	for _, tool := range []string{"setcap", "getcap"} {
		b, err := os.ReadFile(oracle.Tool(t, tool))
		must(t, err)
		must(t, os.WriteFile(filepath.Join(ctx, tool), b, 0o755))
	}
	if out, err := exec.Command("chmod", "-R", "a+rX", ctx).CombinedOutput(); err != nil {
		t.Fatalf("chmod: %v: %s", err, out)
	}
	tag := fmt.Sprintf("t%08x", rand.Uint32())
	build := []string{"build", "--source-date-epoch", "1700000000", "--network", "none", "--progress", "plain"}

	rootArchive := filepath.Join(t.TempDir(), "root.tar")
	testuser.Output(t, exec.Command(bin, append(build, "--state-dir", t.TempDir(), "-o", "docker-archive:"+rootArchive+":lcrl-root:"+tag, ctx)...))
	userArchive := filepath.Join(u.Dir(t), "user.tar")
	cmd := u.Command(nil, bin, append(build, "-o", "docker-archive:"+userArchive+":lcrl-user:"+tag, ctx)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if out, err := cmd.Output(); err != nil {
		t.Fatalf("rootless build: %v\n%s%s", err, out, stderr.String())
	}
	// The base's device nodes are skipped, each with a warning.
	if !strings.Contains(stderr.String(), "skipped device dev/null: a user namespace cannot create device nodes") {
		t.Errorf("no warning for the base's dev/null in the rootless build's output:\n%s", stderr.String())
	}
	if _, err := os.Stat(filepath.Join(u.Home, ".local/share/layercommit/layers")); err != nil {
		t.Errorf("the rootless build's state dir is not the user's default: %v", err)
	}

	reports := map[string]string{}
	layers := map[string]string{}
	for _, img := range []struct{ name, archive string }{{"lcrl-root", rootArchive}, {"lcrl-user", userArchive}} {
		ref := img.name + ":" + tag
		d.Run(t, "load", "-i", img.archive)
		t.Cleanup(func() { _, _, _ = d.Try("rmi", "-f", ref) })
		layers[img.name] = d.Run(t, "inspect", "-f", "{{json .RootFS.Layers}}", ref)
		reports[img.name] = d.Run(t, "run", "--rm", "--network", "none", ref, "sh", "-c", rootlessReport)
	}
	if layers["lcrl-user"] != layers["lcrl-root"] {
		t.Errorf("rootless layers %s\nroot's          %s", layers["lcrl-user"], layers["lcrl-root"])
	}
	want := strings.Join([]string{
		"/srv-data 1500:1500 644", "/usr/local/bin/suid 0:0 4755", "/usr/local/bin/capped 0:0 755",
		"/opt/made-reset 0:0 4711", "/opt/made-chown 1500:1500 4711",
		"/app-file 1500:1500 644", "/owned 1500:1500 2750", "/owned/f 1500:1500 644", "/home/app 1500:1500 755", "/etc/shadow 0:42 640",
		"/usr/local/bin/capped cap_net_bind_service=ep", "uid=1500(app) gid=1500(app) groups=1500(app)"}, "\n")
	for name, got := range reports {
		if got != want {
			t.Errorf("%s shows\n%s\nwant\n%s", name, got, want)
		}
	}
}
