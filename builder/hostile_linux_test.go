package builder

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"
)

// TestBuildHostile runs the Dockerfile rows of HOSTILE.md section 5.3 that
// need a build: meta ARGs (D4), WORKDIR into /proc/self/fd (D22), ADD of
// an archive that links out of the tree followed by a write through the
// link (D26, CVE-2014-9356) and ADD of an xz archive with a fake xz in
// the root (D27, CVE-2014-9357). A host directory next to the build must
// come out untouched.
func TestBuildHostile(t *testing.T) {
	base := busyboxImage(t)
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "hello"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	evil := tarBytes(t, &tar.Header{Typeflag: tar.TypeSymlink, Name: "symlink", Linkname: "/../../../../../../../../../.." + host, Mode: 0o777})
	inner := tarBytes(t, &tar.Header{Typeflag: tar.TypeReg, Name: "fromxz", Mode: 0o644, Size: 2}, "ok")
	var xzb bytes.Buffer
	zw, err := xz.NewWriter(&xzb)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(inner)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	ctxDir := writeContext(t, map[string]string{
		"evil.tar":    string(evil),
		"foo.txt":     "pwned\n",
		"xz":          fmt.Sprintf("#!/bin/sh\ntouch /injected %s/injected\n", host),
		"test.tar.xz": xzb.String(),
	})
	for _, tc := range []struct {
		row, dockerfile string
		wantErr         string // "" for success
	}{
		{"D4", "ARG B=base\nARG V=1\nFROM $B\nRUN test -z \"$V\"\nARG V\nRUN test \"$V\" = 1\n", ""},
		// Confined: the RUN either fails with a Dockerfile line or its
		// cwd is inside the container (fds are CLOEXEC, cwd checked).
		{"D22", "FROM base\nWORKDIR /proc/self/fd/7\nRUN cd /proc/self/cwd && test -e bin/busybox -o \"$(pwd -P)\" != \"\"\nRUN test ! -e " + host + "/hello\n", "?"},
		// The destination is resolved in the root with chroot
		// semantics, as docker does: the link out of the tree leads
		// to <root>/<host>/foo.txt, never to the host.
		{"D26", "FROM base\nADD evil.tar /\nADD foo.txt /symlink/\nRUN test -L /symlink && test \"$(cat " + host + "/foo.txt)\" = pwned\n", ""},
		{"D27", "FROM base\nADD xz /usr/local/sbin/\nRUN chmod 755 /usr/local/sbin/xz\nADD test.tar.xz /\nRUN test ! -e /injected && test \"$(cat /fromxz)\" = ok\n", ""},
	} {
		t.Run(tc.row, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(tc.dockerfile), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := testBuild(t, Options{ContextDir: ctxDir, BuildContexts: map[string]string{"base": base}, NoCache: true})
			switch {
			case tc.wantErr == "?" && err != nil:
				if !strings.HasPrefix(err.Error(), "Dockerfile:") {
					t.Errorf("error %q does not name its line", err)
				}
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case tc.wantErr != "" && tc.wantErr != "?" && (err == nil || err.Error() != tc.wantErr):
				t.Errorf("error %v, want %q", err, tc.wantErr)
			}
			ents, _ := os.ReadDir(host)
			if len(ents) != 1 || ents[0].Name() != "hello" {
				var ns []string
				for _, e := range ents {
					ns = append(ns, e.Name())
				}
				t.Errorf("host directory changed: %q", ns)
			}
		})
	}
}

func tarBytes(t *testing.T, h *tar.Header, data ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(h); err != nil {
		t.Fatal(err)
	}
	for _, d := range data {
		tw.Write([]byte(d))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
