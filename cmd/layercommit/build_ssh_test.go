package main

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/layercommit/layercommit/internal/oracle"
)

// TestBuildSSH: --ssh default takes $SSH_AUTH_SOCK and the RUN finds a
// socket at the SSH_AUTH_SOCK it is given; bad --ssh values are one line.
func TestBuildSSH(t *testing.T) {
	oracle.Root(t)
	dir, err := os.MkdirTemp("", "agent") // short: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	bb, err := os.ReadFile("/usr/bin/busybox") // Debian's is static
	if err != nil {
		oracle.Missing(t, "busybox: %v", err)
	}
	ctx := t.TempDir()
	os.WriteFile(filepath.Join(ctx, "busybox"), bb, 0o755)
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(`FROM scratch
COPY busybox /bin/busybox
SHELL ["/bin/busybox", "sh", "-c"]
RUN --mount=type=ssh,required=true /bin/busybox test -S "$SSH_AUTH_SOCK" && /bin/busybox test "$SSH_AUTH_SOCK" = /run/buildkit/ssh_agent.0
`), 0o644)
	state, out := t.TempDir(), filepath.Join(t.TempDir(), "layout")

	t.Setenv("SSH_AUTH_SOCK", sock)
	if code, _, stderr := cli("build", "-q", "--state-dir", state, "--ssh", "default", "-o", "oci:"+out, ctx); code != 0 {
		t.Fatalf("--ssh default: exit %d: %s", code, stderr)
	}
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"--ssh", "default"}, "", "layercommit: build: bad --ssh \"default\": SSH_AUTH_SOCK is not set\n"},
		{[]string{"--ssh", "x=/nonexistent"}, sock, "layercommit: build: ssh x: stat /nonexistent: no such file or directory\n"},
		{[]string{"--ssh", "other=" + sock}, sock, "layercommit: Dockerfile:4: no SSH key \"default\" forwarded from the client (pass it with --ssh default=SOCKET)\n"},
	} {
		t.Setenv("SSH_AUTH_SOCK", tc.env)
		if tc.env == "" {
			os.Unsetenv("SSH_AUTH_SOCK")
		}
		code, _, stderr := cli(append([]string{"build", "-q", "--no-cache", "--state-dir", state, "-o", "oci:" + filepath.Join(t.TempDir(), "o")}, append(tc.args, ctx)...)...)
		if code == 0 || stderr != tc.want {
			t.Errorf("build %v: exit %d, stderr %q, want %q", tc.args, code, stderr, tc.want)
		}
	}
}
