package main

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/layercommit/layercommit/internal/oracle"
)

// squashDockerfile is a two-stage build whose last stage adds, modifies
// and deletes files of its base (the first stage, which itself added
// /opt to the busybox base), adds a file a later step deletes, and
// changes the config only at the end.
const squashDockerfile = `FROM layercommit-base:busybox AS base
RUN mkdir -p /opt && echo stage0 > /opt/s0 && echo keep > /opt/keep

FROM base
COPY add.txt /added/add.txt
RUN echo changed >> /data/basefile && rm /etc/group && rm /opt/s0 && mkdir -p /app && echo one > /app/one && ln /app/one /app/link && echo tmp > /tmp/gone
RUN rm /tmp/gone && chmod 700 /root
ENV X=1
`

func imageConfig(t *testing.T, file string) (*v1.ConfigFile, v1.Hash) {
	t.Helper()
	img, err := tarball.ImageFromPath(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	id, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return cf, id
}

// TestBuildSquashDocker: build --squash, loaded into Docker 20.10 and 29, runs
// with the tree of the unsquashed build (the last stage's deletions of
// base files are whiteouts against the base, a file added and deleted
// within the stage is gone), has the base stage's layers plus one, and
// the history docker build --squash writes (moby's SquashImage: entries
// past the base's marked empty_layer, one "merge <built> to <base>"
// entry at --source-date-epoch); a --no-cache rebuild gives the same ID.
func TestBuildSquashDocker(t *testing.T) {
	d := oracle.NewDocker(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "base.tar")
	d.Run(t, "save", "-o", base, d.Base)
	ctx := filepath.Join(dir, "ctx")
	must(t, os.Mkdir(ctx, 0o755))
	must(t, os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(squashDockerfile), 0o644))
	must(t, os.WriteFile(filepath.Join(ctx, "add.txt"), []byte("added\n"), 0o644))
	state := filepath.Join(dir, "state")
	const epoch = 1700000000
	build := func(name string, extra ...string) (string, string, string) {
		out := filepath.Join(dir, "out-"+name+".tar")
		ref := oracle.Tag("lc-test/buildsquash-" + name)
		args := append([]string{"build", "-q", "--state-dir", state, "--build-context", d.Base + "=docker-archive:" + base,
			"--source-date-epoch", "1700000000", "-o", "docker-archive:" + out + ":" + ref}, extra...)
		id, _ := lc(t, false, append(args, ctx)...)
		return id, out, ref
	}
	plainID, plainTar, plainRef := build("plain")
	baseID, _, _ := build("base", "--target", "base")
	sqID, sqTar, sqRef := build("squash", "--squash")
	againID, _, _ := build("again", "--squash", "--no-cache")
	if againID != sqID {
		t.Errorf("a --no-cache rebuild with --squash gave %s, the first %s", againID, sqID)
	}
	if sqID == plainID {
		t.Fatalf("--squash gave the unsquashed image %s", sqID)
	}

	plain, _ := imageConfig(t, plainTar)
	sq, id := imageConfig(t, sqTar)
	if id.String() != sqID {
		t.Errorf("the archive's config is %s, build printed %s", id, sqID)
	}
	// The base stage: busybox's layer and its RUN's.
	const nBase, nBaseHist = 2, 2
	if got := len(sq.RootFS.DiffIDs); got != nBase+1 {
		t.Errorf("squashed image has %d layers, want %d (the base's + 1)", got, nBase+1)
	}
	if len(plain.RootFS.DiffIDs) != nBase+3 {
		t.Fatalf("unsquashed image has %d layers, want %d", len(plain.RootFS.DiffIDs), nBase+3)
	}
	for i := 0; i < nBase; i++ {
		if sq.RootFS.DiffIDs[i] != plain.RootFS.DiffIDs[i] {
			t.Errorf("layer %d: %s, the base's is %s", i+1, sq.RootFS.DiffIDs[i], plain.RootFS.DiffIDs[i])
		}
	}
	if len(sq.History) != len(plain.History)+1 {
		t.Fatalf("squashed history has %d entries, want %d", len(sq.History), len(plain.History)+1)
	}
	for i, h := range plain.History {
		want := h
		if i >= nBaseHist {
			want.EmptyLayer = true
		}
		if sq.History[i] != want {
			t.Errorf("history[%d] = %+v, want %+v", i, sq.History[i], want)
		}
	}
	last := sq.History[len(sq.History)-1]
	wantLast := v1.History{Created: v1.Time{Time: time.Unix(epoch, 0)}, Comment: "merge " + plainID + " to " + baseID}
	if !last.Created.Equal(wantLast.Created.Time) || last.Comment != wantLast.Comment || last.CreatedBy != "" || last.EmptyLayer {
		t.Errorf("last history entry %+v, want %+v", last, wantLast)
	}
	if !sq.Created.Equal(time.Unix(epoch, 0)) {
		t.Errorf("created %s, want %s", sq.Created.Time, time.Unix(epoch, 0).UTC())
	}
	if sq.Config.Env[len(sq.Config.Env)-1] != "X=1" {
		t.Errorf("config env %q lost the stage's ENV", sq.Config.Env)
	}

	// Docker 20.10 and 29 load it, count the layers, and run it with
	// the unsquashed build's tree.
	for _, dk := range []struct {
		name string
		d    *oracle.Docker
	}{{"docker20", d}, {"docker29", oracle.NewDocker29(t)}} {
		t.Run(dk.name, func(t *testing.T) {
			d := dk.d
			d.Run(t, "load", "-i", plainTar)
			d.Run(t, "load", "-i", sqTar)
			t.Cleanup(func() { d.Try("rmi", "-f", plainRef, sqRef) })
			if got := d.Run(t, "image", "inspect", "-f", "{{.Id}}", sqRef); got != sqID {
				t.Errorf("docker load gave %s, build printed %s", got, sqID)
			}
			if got := len(strings.Fields(d.Run(t, "image", "inspect", "-f", "{{range .RootFS.Layers}}{{.}} {{end}}", sqRef))); got != nBase+1 {
				t.Errorf("docker sees %d layers, want %d", got, nBase+1)
			}
			want := d.Run(t, "run", "--rm", "--network", "none", plainRef, "sh", "-c", treeScript)
			got := d.Run(t, "run", "--rm", "--network", "none", sqRef, "sh", "-c", treeScript)
			for _, s := range []string{"/opt/keep regular file", "/app/link regular file 644 0:0\n  links 2", "/added/add.txt", "/root directory 700"} {
				if !strings.Contains(want, s) {
					t.Fatalf("the unsquashed build's tree lacks %q:\n%s", s, want)
				}
			}
			for _, s := range []string{"/opt/s0", "/etc/group", "/tmp/gone"} {
				if strings.Contains(want, s) {
					t.Fatalf("the unsquashed build's tree has %q:\n%s", s, want)
				}
			}
			if got != want {
				t.Errorf("squashed image's tree:\n%s\nunsquashed:\n%s", got, want)
			}
		})
	}
}

// TestBuildSquashEdges: FROM scratch squashes into one layer with moby's
// "create new from" entry, --label kept; a last stage that adds no layer is refused
// in one line with nothing written.
func TestBuildSquashEdges(t *testing.T) {
	oracle.Root(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	for _, tc := range []struct {
		name, dockerfile string
		wantErr          string // else: one layer, comment prefix
	}{
		{"scratch", "FROM scratch\nCOPY a /a\nCOPY a /b/a\nENV A=1\n", ""},
		{"nothing to squash", "FROM scratch AS s\nCOPY a /a\nFROM s\nENV A=1\n", "--squash: the last stage adds no layer to its base, nothing to squash"},
		{"scratch, no layer", "FROM scratch\nENV A=1\n", "--squash: the last stage adds no layer to its base, nothing to squash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.TempDir()
			must(t, os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(tc.dockerfile), 0o644))
			must(t, os.WriteFile(filepath.Join(ctx, "a"), []byte("a\n"), 0o644))
			out := filepath.Join(t.TempDir(), "o.tar")
			id, stderr := lc(t, tc.wantErr != "", "build", "-q", "--state-dir", state, "--squash", "--label", "k=v", "-o", "docker-archive:"+out, ctx)
			if tc.wantErr != "" {
				if want := "layercommit: " + tc.wantErr + "\n"; stderr != want {
					t.Errorf("stderr %q, want %q", stderr, want)
				}
				if _, err := os.Stat(out); !os.IsNotExist(err) {
					t.Errorf("%s written on error (%v)", out, err)
				}
				return
			}
			cf, _ := imageConfig(t, out)
			if cf.Config.Labels["k"] != "v" {
				t.Errorf("labels %v, want the --label", cf.Config.Labels)
			}
			if len(cf.RootFS.DiffIDs) != 1 || len(cf.History) != 4 {
				t.Fatalf("%d layers, %d history entries; want 1, 4", len(cf.RootFS.DiffIDs), len(cf.History))
			}
			for _, h := range cf.History[:3] {
				if !h.EmptyLayer {
					t.Errorf("history entry %+v not empty_layer", h)
				}
			}
			if c := cf.History[3].Comment; !strings.HasPrefix(c, "create new from sha256:") || strings.Contains(c, id) {
				t.Errorf("last comment %q, want create new from <the unsquashed ID>", c)
			}
		})
	}
}

// lastLayerEntries lists the entries of the last layer of a docker-archive.
func lastLayerEntries(t *testing.T, file string) map[string]byte {
	t.Helper()
	img, err := tarball.ImageFromPath(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil || len(ls) == 0 {
		t.Fatalf("layers of %s: %v", file, err)
	}
	rc, err := ls[len(ls)-1].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reading the last layer of %s: %v", file, err)
		}
		out[h.Name] = h.Typeflag
	}
}

// TestBuildSquashMatchesDockerSquash compares build --squash with a real
// `docker build --squash` (legacy builder) of a private Docker 20.10 with
// --experimental: the same number of layers, the same history shape
// (length, empty_layer flags, a last "merge <id> to <id>" entry with no
// created_by), the same tree in a container, and the squashed layer
// holding every entry docker's holds (whiteouts included). Ours may hold
// more directories: docker's naive diff ignores a directory whose only
// change is its mtime (moby 9874), ours keeps it, as diff.Naive does.
func TestBuildSquashMatchesDockerSquash(t *testing.T) {
	d := oracle.StartDaemon(t, "--experimental")
	if exp := d.Run(t, "version", "-f", "{{.Server.Experimental}}"); exp != "true" {
		t.Fatalf("private dockerd is not experimental (%s)", exp)
	}
	t.Setenv("DOCKER_BUILDKIT", "0")
	dir := t.TempDir()
	base := filepath.Join(dir, "base.tar")
	d.Run(t, "save", "-o", base, d.Base)
	ctx := filepath.Join(dir, "ctx")
	must(t, os.Mkdir(ctx, 0o755))
	must(t, os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(squashDockerfile), 0o644))
	must(t, os.WriteFile(filepath.Join(ctx, "add.txt"), []byte("added\n"), 0o644))
	ours := oracle.Tag("lc-test/buildsquash-ours")
	oursTar := filepath.Join(dir, "ours.tar")
	lc(t, false, "build", "-q", "--state-dir", filepath.Join(dir, "state"), "--build-context", d.Base+"=docker-archive:"+base,
		"--squash", "-o", "docker-archive:"+oursTar+":"+ours, ctx)
	theirs := oracle.Tag("lc-test/buildsquash-docker")
	d.Run(t, "build", "-q", "--squash", "--network", "none", "-t", theirs, ctx)
	theirsTar := filepath.Join(dir, "theirs.tar")
	d.Run(t, "save", "-o", theirsTar, theirs)
	d.Run(t, "load", "-i", oursTar)

	a, _ := imageConfig(t, oursTar)
	b, _ := imageConfig(t, theirsTar)
	if len(a.RootFS.DiffIDs) != len(b.RootFS.DiffIDs) {
		t.Errorf("ours has %d layers, docker's %d", len(a.RootFS.DiffIDs), len(b.RootFS.DiffIDs))
	}
	if len(a.History) != len(b.History) {
		t.Fatalf("ours has %d history entries, docker's %d", len(a.History), len(b.History))
	}
	merge := regexp.MustCompile(`^merge sha256:[0-9a-f]{64} to sha256:[0-9a-f]{64}$`)
	for i := range a.History {
		ha, hb := a.History[i], b.History[i]
		if ha.EmptyLayer != hb.EmptyLayer {
			t.Errorf("history[%d] empty_layer: ours %t, docker's %t (%s)", i, ha.EmptyLayer, hb.EmptyLayer, hb.CreatedBy)
		}
		if i == len(a.History)-1 {
			for who, h := range map[string]v1.History{"ours": ha, "docker's": hb} {
				if !merge.MatchString(h.Comment) || h.CreatedBy != "" {
					t.Errorf("%s last history entry %+v, want a merge comment and no created_by", who, h)
				}
			}
		}
	}
	if !b.Created.Equal(b.History[len(b.History)-1].Created.Time) || !a.Created.Equal(a.History[len(a.History)-1].Created.Time) {
		t.Errorf("created is not the merge entry's time (ours %s / %s, docker's %s / %s)",
			a.Created.Time, a.History[len(a.History)-1].Created.Time, b.Created.Time, b.History[len(b.History)-1].Created.Time)
	}

	ea, eb := lastLayerEntries(t, oursTar), lastLayerEntries(t, theirsTar)
	for name, typ := range eb {
		if ea[name] != typ {
			t.Errorf("docker's squashed layer has %s (type %c), ours %q", name, typ, ea[name])
		}
	}
	for name, typ := range ea {
		if _, ok := eb[name]; !ok && typ != tar.TypeDir {
			t.Errorf("our squashed layer has %s (type %c), docker's has not", name, typ)
		}
	}
	for _, wh := range []string{"etc/.wh.group", "opt/.wh.s0"} {
		if _, ok := eb[wh]; !ok {
			t.Errorf("docker's squashed layer lacks %s", wh)
		}
	}

	t.Cleanup(func() { d.Try("rmi", "-f", ours, theirs) })
	got := d.Run(t, "run", "--rm", "--network", "none", ours, "sh", "-c", treeScript)
	want := d.Run(t, "run", "--rm", "--network", "none", theirs, "sh", "-c", treeScript)
	if got != want {
		t.Errorf("our squashed image's tree:\n%s\ndocker's:\n%s", got, want)
	}

	// A last stage with no layer of its own: docker fails the squash
	// (its layer store has no diff to a layer that is not a parent), so
	// do we, in one line.
	for _, df := range []string{"FROM " + d.Base + "\nENV A=1\n", "FROM scratch\nENV A=1\n"} {
		must(t, os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(df), 0o644))
		if _, stderr, err := d.Try("build", "-q", "--squash", "--network", "none", ctx); err == nil || !strings.Contains(stderr, "error squashing image") {
			t.Errorf("docker build --squash of %q: %v, stderr %q; want a squash error", df, err, stderr)
		}
		out := filepath.Join(dir, "none.tar")
		_, stderr := lc(t, true, "build", "-q", "--state-dir", filepath.Join(dir, "state"), "--build-context", d.Base+"=docker-archive:"+base,
			"--squash", "-o", "docker-archive:"+out, ctx)
		if stderr != "layercommit: --squash: the last stage adds no layer to its base, nothing to squash\n" {
			t.Errorf("build --squash of %q: stderr %q", df, stderr)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("%s written on error (%v)", out, err)
		}
	}
}
