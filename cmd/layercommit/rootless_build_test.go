package main

import (
	"archive/tar"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
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

// TestRootlessRun: RUN as an ordinary user, in both mappings: the
// sandbox has its own PID namespace (the shell's parent is PID 1), /proc,
// a /dev whose null, zero and urandom work (the host's nodes bound in),
// devpts and shm, its own hostname, and a network namespace with only lo
// (--network none). With --userns=single (its own state dir) the Debian
// base's files owned by other ids (/etc/shadow, group shadow) are root's
// and the build succeeds. The default network needs /dev/net/tun open to
// the user (0666, as udev makes it; scripts/oracles.sh does where there
// is no udev): RUN then gets tap0 from slirp4netns, reaches an HTTP
// server on a host address through its NAT, and neither the host's
// loopback nor slirp's alias for it; where the node is closed the build
// fails in one line naming the node and the fix (and the test then fails
// under LAYERCOMMIT_REQUIRE_ORACLES=1).
func TestRootlessRun(t *testing.T) {
	u := testuser.New(t)
	bin := testuser.Executable(t, binary(t))
	base := debianBase(t, bin)
	ctx := u.Dir(t)
	const probe = `RUN echo "ppid=$PPID host=$(hostname)" > /probe; head -c 4 /dev/zero | od -An -tx1 >> /probe; head -c 8 /dev/urandom > /dev/null && echo urandom >> /probe; echo x > /dev/null && echo null >> /probe; ls -d /dev/pts/ptmx /dev/shm >> /probe; echo net $(ls /sys/class/net) >> /probe; stat -c '%n %u:%g' /etc/shadow >> /probe`
	must(t, os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM "+base+"\n"+probe+"\n"), 0o644))
	for _, mode := range []string{"subids", "single"} {
		t.Run(mode, func(t *testing.T) {
			out := filepath.Join(u.Dir(t), "oci")
			testuser.Output(t, u.Command(nil, bin, "--userns="+mode, "build", "--network", "none", "-q", "-o", "oci:"+out+":t", ctx))
			shadow := "/etc/shadow 0:42"
			if mode == "single" {
				shadow = "/etc/shadow 0:0"
			}
			want := "ppid=1 host=" // then the hostname, a random one
			probeOut := readProbe(t, out)
			lines := strings.Split(strings.TrimSpace(probeOut), "\n")
			if len(lines) != 8 || !strings.HasPrefix(lines[0], want) || len(lines[0]) == len(want) ||
				strings.TrimSpace(lines[1]) != "00 00 00 00" || lines[2] != "urandom" || lines[3] != "null" ||
				lines[4] != "/dev/pts/ptmx" || lines[5] != "/dev/shm" || lines[6] != "net lo" || lines[7] != shadow {
				t.Errorf("RUN saw\n%s\nwant ppid=1, a hostname, /dev's nodes working, devpts, shm and %s", probeOut, shadow)
			}
		})
	}
	t.Run("default network", func(t *testing.T) {
		oracle.Tool(t, "slirp4netns")
		// Servers the test runs: one on a host address (the internet,
		// reached through slirp4netns's NAT), one on the host's loopback
		// (out of reach, and so is slirp's alias 10.0.2.2 for it).
		outside := serveHTTP(t, hostIPv4(t), "outside")
		loop := serveHTTP(t, "127.0.0.1", "loopback")
		_, loopPort, _ := net.SplitHostPort(loop)
		alias := "10.0.2.2:" + loopPort
		probe := func(addr string) string {
			h, p, _ := net.SplitHostPort(addr)
			return fmt.Sprintf(`echo "%[1]s=$(timeout 10 bash -c 'exec 3<>/dev/tcp/%[2]s/%[3]s && printf "GET / HTTP/1.0\\r\\n\\r\\n" >&3 && tail -n 1 <&3' 2>/dev/null || echo refused)" >> /probe; `, addr, h, p)
		}
		run := probe(outside) + probe(loop) + probe(alias) + `echo "links=$(ls /sys/class/net | tr '\n' ' ')" >> /probe; grep nameserver /etc/resolv.conf >> /probe`
		must(t, os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM "+base+"\nRUN "+run+"\n"), 0o644))
		out := filepath.Join(u.Dir(t), "oci")
		cmd := u.Command(nil, bin, "build", "--network", "default", "-q", "--no-cache", "-o", "oci:"+out+":t", ctx)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		if u.Command(nil, "sh", "-c", "exec 3<>/dev/net/tun").Run() != nil {
			// Closed to users (no udev): one line naming the node and the fix.
			const refusal = "RUN: sandbox: the default RUN network needs /dev/net/tun, which this user cannot open (open /dev/net/tun: permission denied): as root, chmod 0666 /dev/net/tun (udev's mode), or use --network none"
			if err == nil || !strings.HasSuffix(strings.TrimSpace(stderr.String()), refusal) {
				t.Fatalf("with /dev/net/tun closed to the user: %v, stderr %q; want it to end with %q", err, stderr.String(), refusal)
			}
			requireUserDevice(t, "/dev/net/tun")
			return
		}
		if err != nil {
			t.Fatalf("with /dev/net/tun open to the user: %v\n%s", err, stderr.String())
		}
		want := outside + "=outside\n" + loop + "=refused\n" + alias + "=refused\nlinks=lo tap0 \nnameserver 10.0.2.3\n"
		if got := readProbe(t, out); got != want {
			t.Errorf("RUN on the default network saw\n%s\nwant\n%s", got, want)
		}
	})
}

// hostIPv4 is a non-loopback IPv4 address of the host.
func hostIPv4(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	must(t, err)
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	oracle.Missing(t, "the host has no non-loopback IPv4 address to serve on")
	return ""
}

// serveHTTP serves body over HTTP on addr:0 until the test ends and
// returns its host:port.
func serveHTTP(t *testing.T, addr, body string) string {
	t.Helper()
	l, err := net.Listen("tcp4", addr+":0")
	must(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, body) })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// readProbe reads /probe from the top layer of the image tagged t in
// the OCI layout dir.
func readProbe(t *testing.T, dir string) string {
	t.Helper()
	img := onlyImage(t, dir)
	ls, err := img.Layers()
	must(t, err)
	rc, err := ls[len(ls)-1].Uncompressed()
	must(t, err)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		must(t, err)
		if h.Name == "probe" {
			b, err := io.ReadAll(tr)
			must(t, err)
			return string(b)
		}
	}
}
