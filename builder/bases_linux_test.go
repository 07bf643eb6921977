package builder

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/export"
	"github.com/layercommit/layercommit/internal/oracle"
)

// importBare imports into d, as ref, a busybox-static root with nothing
// else: no /etc/passwd, no /etc/group (as a busybox or FROM scratch
// image has), and a world-writable /tmp.
func importBare(t *testing.T, d *oracle.Docker, ref string) {
	t.Helper()
	d.Import(t, ref, append(oracle.Busybox(t, "sh", "echo", "id", "cat"), oracle.Dir("tmp/", 0o1777)))
	t.Cleanup(func() { d.Try("rmi", "-f", ref) })
}

// buildBoth builds ctxDir's Dockerfile, whose FROM names base, with
// Build (base read from the daemon's data root; Options.Legacy) and with the real
// `docker build --no-cache` (legacy builder, no network), and returns
// the two images' tags in the daemon.
func buildBoth(t *testing.T, d *oracle.Docker, ctxDir, base, name string) (ours, theirs string) {
	t.Helper()
	t.Setenv("DOCKER_BUILDKIT", "0")
	ours, theirs = oracle.Tag("lc-ours/"+name), oracle.Tag("lc-theirs/"+name)
	out := filepath.Join(t.TempDir(), "ours.tar")
	if _, err := testBuild(t, Options{ContextDir: ctxDir, NoCache: true, Legacy: true,
		BuildContexts: map[string]string{base: "docker-root:" + base},
		Resolve: func(ctx context.Context, ref string) (v1.Image, error) {
			return export.Open(ctx, ref, export.WithDockerRoot(d.Root))
		}}, "docker-archive:"+out+":"+ours); err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Cleanup(func() { d.Try("rmi", "-f", ours, theirs) })
	d.Run(t, "load", "-i", out)
	d.Run(t, "build", "-q", "--no-cache", "--network", "none", "-t", theirs, ctxDir)
	return ours, theirs
}

// TestBuildOnPasswdlessBase: RUN on a base without /etc/passwd and
// /etc/group runs as uid 0, gid 0 (no lookup for an empty USER), and a
// numeric USER needs no entry, as with docker build: both builds
// succeed and give the same files, /ok owned by 0:0.
func TestBuildOnPasswdlessBase(t *testing.T) {
	d := oracle.NewDocker(t)
	base := oracle.Tag("lc-test/nopasswd")
	importBare(t, d, base)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "FROM " + base + `
RUN echo ok > /ok
USER 1234
RUN echo "$(id -u):$(id -g):$HOME" > /tmp/who
CMD ["sh"]
`})
	ours, theirs := buildBoth(t, d, ctxDir, base, "nopasswd")
	fa, fb := exportFiles(t, d, ours), exportFiles(t, d, theirs)
	for _, diff := range diffFiles(fa, fb) {
		t.Errorf("files: %s", diff)
	}
	if !strings.Contains(fa["ok"], "owner=0:0") {
		t.Errorf("/ok: %s, want owner 0:0", fa["ok"])
	}
	if !strings.Contains(fa["tmp/who"], "owner=1234:0") {
		t.Errorf("/tmp/who: %s, want owner 1234:0", fa["tmp/who"])
	}
	for _, ref := range []string{ours, theirs} {
		if got := d.Run(t, "run", "--rm", "--network", "none", ref, "cat", "/ok", "/tmp/who"); got != "ok\n1234:0:/" {
			t.Errorf("%s: /ok and /tmp/who hold %q", ref, got)
		}
	}
}

// TestBuildOnManyLayers: RUN on bases of 71 and 120 layers (Docker
// refuses more than 125) sees the bottom and the top layer. The kernel's
// side of more lowers (130, 200) is tested in internal/overlay and
// sandbox.
func TestBuildOnManyLayers(t *testing.T) {
	d := oracle.NewDocker(t)
	t.Setenv("DOCKER_BUILDKIT", "0")
	for _, n := range []int{71, 120} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			// The base: the busybox image's layer and n-1 COPY layers.
			files := map[string]string{}
			df := "FROM " + d.Base + "\n"
			for i := 1; i < n; i++ {
				files[fmt.Sprintf("f%d", i)] = fmt.Sprintf("%d\n", i)
				df += fmt.Sprintf("COPY f%d /layers/f%d\n", i, i)
			}
			files["Dockerfile"] = df
			base := oracle.Tag(fmt.Sprintf("lc-test/layers-%d", n))
			d.Run(t, "build", "-q", "--network", "none", "-t", base, writeContext(t, files))
			t.Cleanup(func() { d.Try("rmi", "-f", base) })
			if got := d.Run(t, "image", "inspect", "--format", "{{len .RootFS.Layers}}", base); got != fmt.Sprint(n) {
				t.Fatalf("base has %s layers, want %d", got, n)
			}
			ctxDir := writeContext(t, map[string]string{"Dockerfile": "FROM " + base + fmt.Sprintf("\nRUN cat /data/basefile /layers/f%d > /out\n", n-1)})
			ours, theirs := buildBoth(t, d, ctxDir, base, fmt.Sprintf("layers%d", n))
			want := fmt.Sprintf("base file\n%d", n-1)
			for _, ref := range []string{ours, theirs} {
				if got := d.Run(t, "run", "--rm", "--network", "none", ref, "cat", "/out"); got != want {
					t.Errorf("%s: /out = %q, want %q", ref, got, want)
				}
			}
		})
	}
}
