package builder

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// identitiesAnswer is an ssh agent's reply to a request for identities
// that holds none: length 5, SSH_AGENT_IDENTITIES_ANSWER, count 0.
var identitiesAnswer = []byte{0, 0, 0, 5, 12, 0, 0, 0, 0}

// testAgent serves an ssh agent on a unix socket in a temp dir that
// answers every request with identitiesAnswer, and returns its path.
func testAgent(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "agent") // short: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait(); os.RemoveAll(dir) })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				for {
					var hdr [4]byte
					if _, err := io.ReadFull(c, hdr[:]); err != nil {
						return
					}
					n := int(hdr[0])<<24 | int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])
					if _, err := io.CopyN(io.Discard, c, int64(n)); err != nil {
						return
					}
					if _, err := c.Write(identitiesAnswer); err != nil {
						return
					}
				}
			}()
		}
	}()
	return sock
}

var sshlsOnce struct {
	sync.Once
	path string
	err  error
}

// sshlsBinary builds testdata/sshls statically (once per test run) and
// returns its path.
func sshlsBinary(t *testing.T) string {
	t.Helper()
	sshlsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sshls")
		if err != nil {
			sshlsOnce.err = err
			return
		}
		sshlsOnce.path = filepath.Join(dir, "sshls")
		cmd := exec.Command("go", "build", "-o", sshlsOnce.path, "./testdata/sshls")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			sshlsOnce.err = &exec.Error{Name: string(out), Err: err}
		}
	})
	if sshlsOnce.err != nil {
		t.Fatalf("building sshls: %v", sshlsOnce.err)
	}
	return sshlsOnce.path
}

// copySSHLS puts the sshls client at dir/sshls (mode 0755).
func copySSHLS(t *testing.T, dir string) {
	t.Helper()
	data, err := os.ReadFile(sshlsBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sshls"), data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestParseSSH: --ssh as buildctl spells it, refused with one line when
// the socket is missing or not a socket.
func TestParseSSH(t *testing.T) {
	sock := testAgent(t)
	file := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(file, []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, spec, env, id, socket, err string
	}{
		{"default-from-env", "default", sock, "default", sock, ""},
		{"id-socket", "git=" + sock, "", "git", sock, ""},
		{"no-env", "default", "", "", "", "SSH_AUTH_SOCK is not set"},
		{"empty-id", "=" + sock, "", "", "", "want ID or ID=SOCKET"},
		{"key-file", "default=" + file, "", "", "", "is not a socket"},
		{"missing", "default=/nonexistent/s", "", "", "", "no such file"},
		{"two-paths", "default=" + sock + "," + sock, "", "", "", "one agent socket per id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, socket, err := ParseSSH(tc.spec, func(k string) (string, bool) {
				if k == "SSH_AUTH_SOCK" && tc.env != "" {
					return tc.env, true
				}
				return "", false
			})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("err = %v, want one line with %q", err, tc.err)
				}
				return
			}
			if err != nil || id != tc.id || socket != tc.socket {
				t.Fatalf("got %q %q %v, want %q %q", id, socket, err, tc.id, tc.socket)
			}
		})
	}
}
