package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

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
