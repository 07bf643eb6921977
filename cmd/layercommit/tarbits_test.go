package main

import (
	"crypto/md5"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layercommit/layercommit/internal/oracle"
)

// TestSparseDockerLoadRun: an image whose layer holds a PAX sparse entry
// (commit --sparse) loads and runs on Docker 20.10 and 29, the file's
// content right, and Docker keeps its diffID; but docker save (and push)
// of it fails, as Docker rebuilds layers from the applied files.
func TestSparseDockerLoadRun(t *testing.T) {
	for _, dm := range []struct {
		name   string
		docker func(testing.TB) *oracle.Docker
		compat string
	}{{"docker-20.10", oracle.NewDocker, "docker-20.10"}, {"docker-29", oracle.NewDocker29, "docker-29"}} {
		t.Run(dm.name, func(t *testing.T) {
			d := dm.docker(t)
			base := busyboxArchive(t, d)
			upper := t.TempDir()
			f, err := os.Create(filepath.Join(upper, "sparse"))
			must(t, err)
			must(t, f.Truncate(64<<20))
			_, err = f.WriteAt([]byte(strings.Repeat("data", 1024)), 8<<20)
			must(t, err)
			_, err = f.WriteAt([]byte("tail"), 64<<20-4)
			must(t, err)
			must(t, f.Close())
			f, err = os.Open(filepath.Join(upper, "sparse"))
			must(t, err)
			h := md5.New()
			_, err = io.Copy(h, f)
			f.Close()
			must(t, err)
			want := hex.EncodeToString(h.Sum(nil))

			archive := filepath.Join(t.TempDir(), "img.tar")
			name := oracle.Tag("lc-test/sparse")
			_, stderr := lc(t, false, "commit", "-q", "--compat", dm.compat, "--sparse", "--from", "docker-archive:"+base, "--upper", upper, "-o", "docker-archive:"+archive+":"+name)
			if lines := strings.Split(strings.TrimSpace(stderr), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "layercommit: warning: --sparse: ") || !strings.Contains(lines[0], "docker save") {
				t.Errorf("commit --sparse to a docker-archive warned %q, want one warning line naming docker save", stderr)
			}
			st, err := os.Stat(archive)
			must(t, err)
			t.Cleanup(func() { d.Try("rmi", "-f", name) })
			d.Run(t, "load", "-i", archive)
			out := d.Run(t, "run", "--rm", "--network", "none", name, "sh", "-c", "md5sum /sparse; stat -c %s /sparse")
			if out != want+"  /sparse\n"+"67108864" {
				t.Fatalf("docker run shows %q, want md5 %s and 67108864 bytes", out, want)
			}
			// Docker verified and kept our sparse layer: its last diffID is
			// the sparse one, not the dense one.
			sparseID, _ := lc(t, false, "diff", "--compat", dm.compat, "--sparse", "-o", filepath.Join(t.TempDir(), "l.tar"), upper)
			denseID, _ := lc(t, false, "diff", "--compat", dm.compat, "-o", filepath.Join(t.TempDir(), "l.tar"), upper)
			layers := strings.Fields(d.Run(t, "image", "inspect", "-f", "{{range .RootFS.Layers}}{{.}} {{end}}", name))
			if sparseID == denseID || layers[len(layers)-1] != sparseID {
				t.Fatalf("docker lists %v; sparse diffID %s, dense %s", layers, sparseID, denseID)
			}
			// What Docker cannot do with it: tar-split rebuilds the layer
			// from the applied (dense) file, so docker save and push fail.
			_, stderr, err = d.Try("save", "-o", filepath.Join(t.TempDir(), "save.tar"), name)
			if err == nil || !strings.Contains(stderr, "could not verify layer data") {
				t.Errorf("docker save of a sparse layer: %v %q (it failed to verify in 20.10 and 29)", err, stderr)
			}
			t.Logf("image archive %d bytes for a 64 MiB file with 4 KiB of data", st.Size())
		})
	}
}

// TestSparseWarningCLI: --sparse warns, on one stderr line, that Docker
// cannot save the image, when the destination is a Docker's or the
// profile a Docker's (all of them); without --sparse nothing is said.
func TestSparseWarningCLI(t *testing.T) {
	upper := t.TempDir()
	must(t, os.WriteFile(filepath.Join(upper, "f"), []byte("x"), 0o644))
	for _, c := range []struct {
		name string
		args []string
		warn bool
	}{
		{"sparse to docker-archive", []string{"--sparse", "-o", "docker-archive:" + filepath.Join(t.TempDir(), "a.tar")}, true},
		{"sparse to OCI, docker-20.10 profile", []string{"--sparse", "--compat", "docker-20.10", "-o", "oci:" + filepath.Join(t.TempDir(), "l")}, true},
		{"sparse to OCI, default profile", []string{"--sparse", "-o", "oci:" + filepath.Join(t.TempDir(), "l")}, true},
		{"dense to docker-archive", []string{"-o", "docker-archive:" + filepath.Join(t.TempDir(), "a.tar")}, false},
		{"dense to OCI", []string{"--compat", "docker-29", "-o", "oci:" + filepath.Join(t.TempDir(), "l")}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, stderr := lc(t, false, append([]string{"commit", "-q", "--upper", upper}, c.args...)...)
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			warned := len(lines) == 1 && strings.HasPrefix(lines[0], "layercommit: warning: --sparse: ") && strings.Contains(lines[0], "docker save")
			if warned != c.warn || !c.warn && stderr != "" {
				t.Fatalf("stderr %q, want a warning: %v", stderr, c.warn)
			}
		})
	}
}

// TestTarFlagErrors: bad --xattrs lists are one line, nothing written.
func TestTarFlagErrors(t *testing.T) {
	upper := t.TempDir()
	must(t, os.WriteFile(filepath.Join(upper, "f"), []byte("x"), 0o644))
	for _, c := range []struct{ name, list, want string }{
		{"no namespace", "capability", "--xattrs: bad xattr pattern"},
		{"empty item", "user.*,,trusted.*", "empty item"},
		{"star inside", "user.*x", "'*' may only end"},
		{"equals", "user.a=b", "holds '='"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, args := range [][]string{
				{"commit", "-q", "--xattrs", c.list, "--upper", upper, "-o", "oci:" + filepath.Join(dir, "layout")},
				{"diff", "--xattrs", c.list, "-o", filepath.Join(dir, "l.tar"), upper},
			} {
				_, stderr := lc(t, true, args...)
				assertCommitError(t, stderr, c.want)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("left %d entries behind", len(ents))
			}
		})
	}
}
