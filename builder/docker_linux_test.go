package builder

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/layercommit/layercommit/internal/oracle"
)

// TestFixtureBuildsMatchDocker builds each fixtures/builds/<name> with
// Build and with the real `docker build` (legacy builder, no network),
// loads ours with `docker load`, runs both, and compares the config
// fields, the history's length and empty_layer flags, the files of the
// final image (type, mode, owner, content) and the output of running it.
func TestFixtureBuildsMatchDocker(t *testing.T) {
	d := oracle.NewDocker(t)
	t.Setenv("DOCKER_BUILDKIT", "0")
	base := filepath.Join(t.TempDir(), "base.tar")
	d.Run(t, "save", "-o", base, d.Base)
	dfs, _ := filepath.Glob("../fixtures/builds/*/Dockerfile")
	if len(dfs) == 0 {
		t.Fatal("no fixtures under fixtures/builds")
	}
	state := t.TempDir()
	for _, df := range dfs {
		dir := filepath.Dir(df)
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "lc.tar")
			ours := oracle.Tag("lc-fixture/" + name)
			id, err := testBuild(t, Options{ContextDir: dir, StateDir: state, NoCache: true, Legacy: true,
				BuildContexts: map[string]string{d.Base: "docker-archive:" + base},
			}, "docker-archive:"+out+":"+ours)
			if err != nil {
				t.Fatal(err)
			}
			d.Run(t, "load", "-i", out)
			theirs := oracle.Tag("dk-fixture/" + name)
			d.Run(t, "build", "-q", "--no-cache", "--network", "none", "-t", theirs, dir)
			t.Cleanup(func() { d.Try("rmi", "-f", ours, theirs) })
			if got := d.Run(t, "image", "inspect", "--format", "{{.Id}}", ours); got != id.String() {
				t.Errorf("docker load gave %s, Build returned %s", got, id)
			}

			// Config fields.
			var ca, cb v1.Config
			inspect := func(ref string, c *v1.Config) {
				if err := json.Unmarshal([]byte(d.Run(t, "image", "inspect", "--format", "{{json .Config}}", ref)), c); err != nil {
					t.Fatal(err)
				}
			}
			inspect(ours, &ca)
			inspect(theirs, &cb)
			for _, f := range []string{"Env", "Cmd", "Entrypoint", "User", "WorkingDir", "ExposedPorts", "Volumes", "Labels", "StopSignal", "Healthcheck", "OnBuild", "Shell"} {
				va := reflect.ValueOf(ca).FieldByName(f).Interface()
				vb := reflect.ValueOf(cb).FieldByName(f).Interface()
				if !reflect.DeepEqual(va, vb) {
					t.Errorf("Config.%s: ours %#v, docker's %#v", f, va, vb)
				}
			}

			// History: length and empty_layer flags.
			ha := history(t, out)
			dkTar := filepath.Join(t.TempDir(), "dk.tar")
			d.Run(t, "save", "-o", dkTar, theirs)
			hb := history(t, dkTar)
			if len(ha) != len(hb) {
				t.Errorf("history: ours has %d entries, docker's %d", len(ha), len(hb))
			} else {
				for i := range ha {
					if ha[i].EmptyLayer != hb[i].EmptyLayer {
						t.Errorf("history[%d] empty_layer: ours %t (%s), docker's %t (%s)", i, ha[i].EmptyLayer, ha[i].CreatedBy, hb[i].EmptyLayer, hb[i].CreatedBy)
					}
				}
			}

			// Files of the final image.
			fa, fb := exportFiles(t, d, ours), exportFiles(t, d, theirs)
			for _, diff := range diffFiles(fa, fb) {
				t.Errorf("files: %s", diff)
			}

			// Running it.
			ra := d.Run(t, "run", "--rm", "--network", "none", ours)
			rb := d.Run(t, "run", "--rm", "--network", "none", theirs)
			if ra != rb || ra == "" {
				t.Errorf("run output differs:\nours:\n%s\ndocker's:\n%s", ra, rb)
			}
			if want, err := os.ReadFile(filepath.Join(dir, "expected-output")); err == nil && ra != strings.TrimSpace(string(want)) {
				t.Errorf("run output:\n%s\nwant:\n%s", ra, want)
			}
		})
	}
}

func history(t *testing.T, file string) []v1.History {
	t.Helper()
	img, err := tarball.ImageFromPath(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return cf.History
}

// exportFiles lists a container's file system: path -> "type mode
// uid:gid size sha256 linkname" (no times).
func exportFiles(t *testing.T, d *oracle.Docker, ref string) map[string]string {
	t.Helper()
	cid := d.Run(t, "create", ref)
	defer d.Try("rm", "-f", cid)
	cmd := exec.Command(d.Bin, "-H", d.Host, "export", cid)
	r, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		hs := sha256.New()
		io.Copy(hs, tr)
		files[strings.TrimSuffix(h.Name, "/")] = fmt.Sprintf("type=%c mode=%o owner=%d:%d size=%d sha256=%x link=%q",
			h.Typeflag, h.Mode&0o7777, h.Uid, h.Gid, h.Size, hs.Sum(nil)[:8], h.Linkname)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	return files
}

func diffFiles(a, b map[string]string) []string {
	var out []string
	for k, va := range a {
		if vb, ok := b[k]; !ok {
			out = append(out, fmt.Sprintf("%s only in ours (%s)", k, va))
		} else if va != vb {
			out = append(out, fmt.Sprintf("%s: ours %s, docker's %s", k, va, vb))
		}
	}
	for k, vb := range b {
		if _, ok := a[k]; !ok {
			out = append(out, fmt.Sprintf("%s only in docker's (%s)", k, vb))
		}
	}
	sort.Strings(out)
	return out
}
