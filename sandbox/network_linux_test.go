package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/internal/oracle"
)

// hostAddress is a non-loopback IPv4 address of the host, where a
// server stands for "the internet": a RUN with the default network
// reaches it through slirp4netns's NAT as it would reach a mirror.
func hostAddress(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	oracle.Missing(t, "the host has no non-loopback IPv4 address to serve on")
	return ""
}

// serve starts an HTTP server on addr:0 answering body and returns its
// host:port.
func serve(t *testing.T, addr, body string) string {
	t.Helper()
	l, err := net.Listen("tcp4", addr+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, body) })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// TestSandboxNetwork: the default network reaches a server on a host
// address (NAT through slirp4netns) but neither the host's loopback
// services nor slirp's alias for them; none reaches nothing; host reaches
// both. Each probe is busybox nc, printing ADDR= and the reply's last
// line (the body) or nc's error.
func TestSandboxNetwork(t *testing.T) {
	if !SlirpAvailable() {
		oracle.Missing(t, "slirp4netns not installed")
	}
	lower := busyboxRoot(t)
	outside := serve(t, hostAddress(t), "outside")
	loop := serve(t, "127.0.0.1", "loopback")
	_, loopPort, _ := net.SplitHostPort(loop)
	alias := "10.0.2.2:" + loopPort
	probe := func(addr string) string {
		h, p, _ := net.SplitHostPort(addr)
		return fmt.Sprintf(`echo "%s=$(printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 5 %s 2>&1 | tail -n 1)";`, addr, h+" "+p)
	}
	script := probe(outside) + probe(loop) + probe(alias) + `echo "resolv=$(grep nameserver /etc/resolv.conf | tr '\n' ' ')"; echo "links=$(ls /sys/class/net | tr '\n' ' ')"`
	const refused = "nc: can't connect to remote host"
	for _, tc := range []struct {
		network string
		want    []string
	}{
		{NetworkDefault, []string{outside + "=outside\n", loop + "=" + refused, alias + "=" + refused, "resolv=nameserver 10.0.2.3 \n", "links=lo tap0 \n"}},
		{NetworkNone, []string{outside + "=" + refused, loop + "=" + refused, alias + "=" + refused, "resolv=\n", "links=lo \n"}},
		{NetworkHost, []string{outside + "=outside\n", loop + "=loopback\n"}},
	} {
		t.Run(tc.network, func(t *testing.T) {
			spec := newSpec(t, []string{lower}, "/bin/sh", "-c", script)
			spec.Network = tc.network
			binds, err := NetworkEtcFiles(t.TempDir(), "host1", tc.network)
			if err != nil {
				t.Fatal(err)
			}
			spec.Binds = binds
			var out bytes.Buffer
			code, err := Run(context.Background(), spec, &out, &out)
			if err != nil || code != 0 {
				t.Fatalf("Run: %d %v\n%s", code, err, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

// TestSandboxNetworkKeepsHostMounts: a RUN on the default network leaves
// the host's shared mounts mounted. slirp4netns's own sandbox detaches
// its old root after making only "/" private, which unmounted every
// shared mount below it on the host (dockerd's running containers lost
// their rootfs); it must start in a private mount namespace of ours.
func TestSandboxNetworkKeepsHostMounts(t *testing.T) {
	lower := busyboxRoot(t)
	// A shared tmpfs with a mount inside it, as dockerd's overlay2
	// rootfs mounts sit in shared parents: unmount events on a peer of
	// the parent propagate to the child here.
	parent := t.TempDir()
	if err := unix.Mount("tmpfs", parent, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(parent, unix.MNT_DETACH) })
	if err := unix.Mount("", parent, "", unix.MS_SHARED, ""); err != nil {
		t.Fatalf("making the tmpfs shared: %v", err)
	}
	child := filepath.Join(parent, "child")
	if err := os.Mkdir(child, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", child, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mounting the child tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(child, unix.MNT_DETACH) })
	spec := newSpec(t, []string{lower}, "/bin/sh", "-c", "true")
	spec.Network = NetworkDefault
	binds, err := NetworkEtcFiles(t.TempDir(), "host1", NetworkDefault)
	if err != nil {
		t.Fatal(err)
	}
	spec.Binds = binds
	var out bytes.Buffer
	if code, err := Run(context.Background(), spec, &out, &out); err != nil || code != 0 {
		t.Fatalf("Run: %d %v\n%s", code, err, out.String())
	}
	for _, p := range []string{parent, child} {
		ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(p))
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) != 1 {
			t.Errorf("the host's mount at %s is gone after a RUN on the default network", p)
		}
	}
}
