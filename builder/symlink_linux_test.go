package builder

import (
	"archive/tar"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layercommit/layercommit/internal/oracle"
)

// symlinkSetup is a RUN line (busybox sh) planting the symlinks the
// tests below copy through: Debian's /var/run -> /run and /lib ->
// usr/lib, links that point outside the root by an absolute /etc/..
// chain and by a ../.. chain, a loop, a link as a file destination, and
// chains of 9, 40 and 41 links (c1 -> c2 -> ... -> /run).
func symlinkSetup(victim string) string {
	return fmt.Sprintf(`RUN busybox mkdir -p /run /var /usr/lib /etc && busybox ln -s /run /var/run && busybox ln -s usr/lib /lib \
 && busybox ln -s /etc/../../../..%[1]s /abs && busybox ln -s ../../../../../../..%[1]s /etc/rel \
 && busybox ln -s /loop2 /loop1 && busybox ln -s /loop1 /loop2 && busybox ln -s /usr/lib/target /etc/last \
 && i=1 && while [ $i -lt 40 ]; do busybox ln -s /c$((i+1)) /c$i; i=$((i+1)); done && busybox ln -s /run /c40 && busybox ln -s /c1 /c0 \
 && busybox ln -s /c33 /nine
`, victim)
}

// plantTar is an archive that plants symlinks out of the tree (absolute
// and relative) and then writes through them.
func plantTar(t *testing.T, victim string) string {
	t.Helper()
	var b strings.Builder
	tw := tar.NewWriter(&b)
	for _, h := range []*tar.Header{
		{Typeflag: tar.TypeSymlink, Name: "esc", Linkname: "/../../../../.." + victim, Mode: 0o777},
		{Typeflag: tar.TypeReg, Name: "esc/pwned", Mode: 0o644, Size: 2},
		{Typeflag: tar.TypeSymlink, Name: "d/rel", Linkname: "../../../../../../../.." + victim, Mode: 0o777},
		{Typeflag: tar.TypeReg, Name: "d/rel/pwned2", Mode: 0o644, Size: 2},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("x\n"))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// victimDir is a host directory holding one file; checkVictim fails the
// test if anything in it changed.
func victimDir(t *testing.T) string {
	t.Helper()
	v := t.TempDir()
	if err := os.WriteFile(filepath.Join(v, "hello"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	return v
}

func checkVictim(t *testing.T, v string) {
	t.Helper()
	ents, _ := os.ReadDir(v)
	if len(ents) != 1 || ents[0].Name() != "hello" {
		var ns []string
		for _, e := range ents {
			ns = append(ns, e.Name())
		}
		t.Errorf("victim directory outside the root changed: %q", ns)
	}
	if b, err := os.ReadFile(filepath.Join(v, "hello")); err != nil || string(b) != "hello" {
		t.Errorf("victim file changed: %q, %v", b, err)
	}
}

// TestBuildCopyThroughSymlinks: COPY, ADD and WORKDIR destinations are
// resolved in the image root with chroot semantics, as docker build
// resolves them: through /var/run -> /run into /run, through links that
// point outside the root to the same path inside it, through a symlink
// as the last name to its target; COPY --from reads through them too.
// Loops and chains longer than 40 links are errors. A victim directory
// outside the root stays untouched throughout.
func TestBuildCopyThroughSymlinks(t *testing.T) {
	base := busyboxImage(t)
	victim := victimDir(t)
	ctxDir := writeContext(t, map[string]string{
		"f": "f\n", "g": "g\n", "h": "h\n", "dir/a": "a\n", "dir/sub/b": "b\n",
		"plant.tar": plantTar(t, victim),
	})
	v := victim
	ok := "FROM base AS one\n" + symlinkSetup(victim) + `COPY f /var/run/
COPY f /lib/libf
COPY dir /var/run/tree/
COPY f /abs/
COPY dir /etc/rel/tree/
COPY f /etc/last
COPY g /c1/
COPY h /nine/
WORKDIR /var/run/w
ADD plant.tar /
ADD plant.tar /var/run/sub/
RUN test -L /var/run && test -L /lib && test -L /abs && test -L /etc/rel && test -L /etc/last && test -L /esc \
 && test -f /run/f && test -f /usr/lib/libf && test -f /run/tree/a && test -f /run/tree/sub/b \
 && test -f ` + v + `/f && test -f ` + v + `/tree/sub/b && test "$(cat /usr/lib/target)" = f \
 && test -f /run/g && test -f /run/h && test -d /run/w \
 && test -f ` + v + `/pwned && test -f ` + v + `/pwned2 \
 && test -f /run/sub/` + v + `/pwned && test -f /run/sub/` + v + `/pwned2
FROM base
COPY --from=one /var/run/f /fromrun
COPY --from=one /abs/tree /fromabs/
COPY --from=one /etc/last /fromlast
RUN test -f /fromrun && test -f /fromabs/sub/b && test "$(cat /fromlast)" = f
`
	run := func(t *testing.T, dockerfile string) error {
		t.Helper()
		if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := testBuild(t, Options{ContextDir: ctxDir, BuildContexts: map[string]string{"base": base}, NoCache: true})
		return err
	}
	t.Run("resolved", func(t *testing.T) {
		if err := run(t, ok); err != nil {
			t.Fatal(err)
		}
		checkVictim(t, victim)
	})
	for _, tc := range []struct{ name, step, want string }{
		{"loop", "COPY f /loop1/", "too many levels of symbolic links"},
		{"loop-file", "COPY f /loop1/x", "too many levels of symbolic links"},
		{"41-links", "COPY f /c0/", "too many levels of symbolic links"},
		{"add-loop", "ADD plant.tar /loop2/", "too many levels of symbolic links"},
		{"workdir-loop", "WORKDIR /loop1", "too many levels of symbolic links"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(t, "FROM base\n"+symlinkSetup(victim)+tc.step+"\n")
			if err == nil || !strings.HasPrefix(err.Error(), "Dockerfile:7: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want Dockerfile:7: ... %s", err, tc.want)
			}
			checkVictim(t, victim)
		})
	}
}

// TestCopyThroughSymlinksMatchesDocker builds the same symlink-laden
// Dockerfile with Build and with the real docker build and compares the
// files of the two images: destinations through absolute and relative
// symlinks, escaping ones included, land where docker puts them. A victim
// directory outside both roots stays untouched.
func TestCopyThroughSymlinksMatchesDocker(t *testing.T) {
	d := oracle.NewDocker(t)
	t.Setenv("DOCKER_BUILDKIT", "0")
	victim := victimDir(t)
	ctxDir := writeContext(t, map[string]string{
		"f": "f\n", "g": "g\n", "dir/a": "a\n", "dir/sub/b": "b\n",
		"plant.tar": plantTar(t, victim),
	})
	// The base image's own ln, not busybox ln: it is a full busybox.
	setup := strings.ReplaceAll(symlinkSetup(victim), "busybox ", "")
	dockerfile := "FROM " + d.Base + "\n" + setup + `COPY f /var/run/
COPY f /lib/libf
COPY dir /var/run/tree/
COPY f /abs/
COPY dir /etc/rel/tree/
COPY f /etc/last
COPY g /c1/
WORKDIR /var/run/w
ADD plant.tar /
CMD ["sh"]
`
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(t.TempDir(), "base.tar")
	d.Run(t, "save", "-o", base, d.Base)
	out := filepath.Join(t.TempDir(), "lc.tar")
	ours, theirs := oracle.Tag("lc-symlinks"), oracle.Tag("dk-symlinks")
	if _, err := testBuild(t, Options{ContextDir: ctxDir, NoCache: true, Legacy: true,
		BuildContexts: map[string]string{d.Base: "docker-archive:" + base},
	}, "docker-archive:"+out+":"+ours); err != nil {
		t.Fatal(err)
	}
	checkVictim(t, victim)
	d.Run(t, "load", "-i", out)
	d.Run(t, "build", "-q", "--no-cache", "--network", "none", "-t", theirs, ctxDir)
	t.Cleanup(func() { d.Try("rmi", "-f", ours, theirs) })
	checkVictim(t, victim)
	fa, fb := exportFiles(t, d, ours), exportFiles(t, d, theirs)
	for _, diff := range diffFiles(fa, fb) {
		t.Errorf("files: %s", diff)
	}
	for _, p := range []string{"run/f", "usr/lib/libf", "run/tree/sub/b", strings.TrimPrefix(victim, "/") + "/f", "usr/lib/target", "run/g", "run/w", strings.TrimPrefix(victim, "/") + "/pwned2"} {
		if _, ok := fa[p]; !ok {
			t.Errorf("%s missing from our image", p)
		}
	}
}
