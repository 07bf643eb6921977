package builder

import (
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layercommit/layercommit/internal/oracle"
	"github.com/layercommit/layercommit/sandbox"
)

// netServers starts two HTTP servers: "outside" on a non-loopback host
// address (it stands for a mirror: a RUN reaches it through NAT) and
// "loopback" on the host's 127.0.0.1 (a host service no default RUN may
// reach). It returns their host:port.
func netServers(t *testing.T) (outside, loopback string) {
	t.Helper()
	if !sandbox.SlirpAvailable() {
		oracle.Missing(t, "slirp4netns not installed")
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	host := ""
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			host = n.IP.String()
			break
		}
	}
	if host == "" {
		oracle.Missing(t, "the host has no non-loopback IPv4 address to serve on")
	}
	start := func(addr, body string) string {
		l, err := net.Listen("tcp4", addr+":0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, body) })}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		return l.Addr().String()
	}
	return start(host, "outside"), start("127.0.0.1", "loopback")
}

// probe is a shell command that writes to file the last line of addr's
// HTTP reply (its body) or busybox nc's error.
func probe(addr, file string) string {
	h, p, _ := net.SplitHostPort(addr)
	return fmt.Sprintf(`(printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 %s %s 2>&1) | tail -n 1 > %s`, h, p, file)
}

const cantConnect = `content="nc: can't connect to remote host`

// TestBuildNetwork: a RUN gets the build's network (default: private
// with NAT; it reaches a host address but not the host's loopback),
// RUN --network overrides it, and host needs the entitlement.
func TestBuildNetwork(t *testing.T) {
	base := busyboxImage(t)
	outside, loop := netServers(t)
	for _, tc := range []struct {
		name       string
		o          Options
		dockerfile string
		want       map[string]string
	}{
		{"default-reaches-outside-not-host-loopback", Options{},
			"RUN " + probe(outside, "/a") + "\nRUN " + probe(loop, "/b") + "\nRUN --network=default " + probe(outside, "/c"),
			map[string]string{"a": `content="outside"`, "b": cantConnect, "c": `content="outside"`}},
		{"run-network-none", Options{},
			"RUN --network=none " + probe(outside, "/a"),
			map[string]string{"a": cantConnect}},
		{"build-network-none", Options{Network: "none"},
			"RUN " + probe(outside, "/a") + "\nRUN --network=default " + probe(outside, "/b"),
			map[string]string{"a": cantConnect, "b": cantConnect}},
		{"run-network-host-allowed", Options{Allow: []string{EntitlementNetworkHost}},
			"RUN --network=host " + probe(loop, "/a"),
			map[string]string{"a": `content="loopback"`}},
		{"build-network-host", Options{Network: "host"},
			"RUN " + probe(loop, "/a") + "\nRUN --network=none " + probe(outside, "/b") + "\nRUN --network=host " + probe(loop, "/c"),
			map[string]string{"a": `content="loopback"`, "b": cantConnect, "c": `content="loopback"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			o.ContextDir = writeContext(t, map[string]string{"Dockerfile": "FROM " + base + "\n" + tc.dockerfile + "\n"})
			dest := filepath.Join(t.TempDir(), "out")
			if _, err := testBuild(t, o, "oci:"+dest); err != nil {
				t.Fatalf("build: %v", err)
			}
			tree := imageTree(t, layoutImage(t, dest))
			for p, w := range tc.want {
				if !strings.Contains(tree[p], w) {
					t.Errorf("/%s is %q, want it to contain %q", p, tree[p], w)
				}
			}
		})
	}
}

// TestBuildEntitlements: RUN --network=host and RUN --security=insecure
// without their entitlement fail before anything runs, with one line, as
// BuildKit refuses them (its message has no line).
func TestBuildEntitlements(t *testing.T) {
	k := oracle.NewBuildKit(t)
	for _, tc := range []struct {
		name, run, want, buildkit string
	}{
		{"network-host", "RUN --network=host true", "Dockerfile:3: RUN --network=host: network.host is not allowed (grant it with --allow network.host)", "network.host is not allowed"},
		{"security-insecure", "RUN --security=insecure true", "Dockerfile:3: RUN --security=insecure: security.insecure is not allowed (grant it with --allow security.insecure)", "security.insecure is not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The first RUN would make /ran: it must not run.
			df := "FROM %s\nRUN touch /ran\n" + tc.run + "\n"
			_, out, err := k.TryBuild(t, writeContext(t, map[string]string{"Dockerfile": fmt.Sprintf(df, k.Base)}), oracle.BuildOpts{})
			if err == nil || !strings.Contains(out, tc.buildkit) {
				t.Errorf("BuildKit: err %v, output lacks %q:\n%s", err, tc.buildkit, out)
			}
			ctx := writeContext(t, map[string]string{"Dockerfile": fmt.Sprintf(df, busyboxImage(t))})
			state := t.TempDir()
			_, err = testBuild(t, Options{ContextDir: ctx, StateDir: state})
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error has several lines: %q", err)
			}
		})
	}
}

// TestBuildKitNetwork: what a RUN reaches on a host address, with the
// default network and with none, is what BuildKit's RUN reaches. (The
// host's loopback is where they differ: this BuildKit's OCI worker has
// no CNI and so runs RUN in the host's network, see the README.)
func TestBuildKitNetwork(t *testing.T) {
	k := oracle.NewBuildKit(t)
	outside, _ := netServers(t)
	df := "FROM {{BASE}}\nRUN " + probe(outside, "/a") + "\nRUN --network=none " + probe(outside, "/n") + "\n"
	ctx := writeContext(t, map[string]string{"Dockerfile": strings.ReplaceAll(df, "{{BASE}}", k.Base)})
	theirs := k.Build(t, ctx, oracle.BuildOpts{})
	ours := filepath.Join(t.TempDir(), "ours")
	if _, err := testBuild(t, Options{ContextDir: ctx, ResolvePlatform: registryResolver}, "oci:"+ours); err != nil {
		t.Fatalf("our build: %v", err)
	}
	a, b := imageTree(t, layoutImage(t, theirs)), imageTree(t, layoutImage(t, ours))
	if !strings.Contains(a["a"], `content="outside"`) || !strings.Contains(a["n"], cantConnect) {
		t.Errorf("BuildKit's /a = %q, /n = %q", a["a"], a["n"])
	}
	for _, d := range treeDiff(a, b) {
		t.Error(d)
	}
}

// TestBuildWithoutSlirp: without slirp4netns a RUN on the default
// network fails with one line naming it (and what to do); --network none
// needs nothing.
func TestBuildWithoutSlirp(t *testing.T) {
	base := busyboxImage(t)
	t.Setenv("PATH", t.TempDir())
	ctx := writeContext(t, map[string]string{"Dockerfile": "FROM " + base + "\nRUN true\n"})
	_, err := testBuild(t, Options{ContextDir: ctx})
	want := "Dockerfile:2: RUN: the default RUN network needs slirp4netns on the PATH (Debian: apt-get install slirp4netns), or use --network none"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	if _, err := testBuild(t, Options{ContextDir: ctx, Network: "none"}); err != nil {
		t.Errorf("--network none without slirp4netns: %v", err)
	}
}
