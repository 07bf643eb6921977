package main

import (
	"archive/tar"
	"bytes"
	"crypto/md5"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layercommit/layercommit/fixtures"
	"github.com/layercommit/layercommit/internal/oracle"
)

// shapeUppers are two upper dirs over the oracle's busybox base, built by
// code: a adds /app (one, two, a hard link of one) and changes
// /data/basefile; b, over a, deletes /etc/group and /app/two, adds
// /new.txt, /tmp/cache.log and three 300 KiB files of random bytes, the
// first hard-linked as /big/link.
func shapeUppers(t *testing.T) (a, b string) {
	t.Helper()
	dir := t.TempDir()
	a, b = filepath.Join(dir, "a"), filepath.Join(dir, "b")
	must(t, os.Mkdir(a, 0o755))
	must(t, os.Mkdir(b, 0o755))
	must(t, fixtures.Apply(a,
		fixtures.CreateDir("app", 0o755),
		fixtures.CreateFile("app/one", []byte("one\n"), 0o644),
		fixtures.Link("app/one", "app/one-link"),
		fixtures.CreateFile("app/two", []byte("two\n"), 0o644),
		fixtures.CreateDir("data", 0o755),
		fixtures.CreateFile("data/basefile", []byte("changed in a\n"), 0o644)))
	rnd := rand.New(rand.NewSource(13))
	var big []fixtures.Applier
	for i := range 3 {
		data := make([]byte, 300<<10)
		rnd.Read(data)
		big = append(big, fixtures.CreateFile(fmt.Sprintf("big/f%d", i), data, 0o644))
	}
	must(t, fixtures.Apply(b, append([]fixtures.Applier{
		fixtures.CreateDir("etc", 0o755),
		fixtures.Whiteout("etc/group"),
		fixtures.CreateDir("app", 0o755),
		fixtures.Whiteout("app/two"),
		fixtures.CreateFile("new.txt", []byte("new\n"), 0o644),
		fixtures.CreateDir("tmp", 0o755),
		fixtures.CreateFile("tmp/cache.log", []byte("log\n"), 0o644),
		fixtures.CreateDir("big", 0o755),
	}, append(big, fixtures.Link("big/f0", "big/link"))...)...))
	return a, b
}

// TestCommitShapingDocker: excluded, squashed, epoch-clamped and split
// images load into Docker 20.10 and Docker 29, and their containers see
// what the options promise.
func TestCommitShapingDocker(t *testing.T) {
	for _, daemon := range []struct {
		name string
		new  func(testing.TB) *oracle.Docker
	}{{"docker20", oracle.NewDocker}, {"docker29", oracle.NewDocker29}} {
		t.Run(daemon.name, func(t *testing.T) {
			d := daemon.new(t)
			base := busyboxArchive(t, d)
			upA, upB := shapeUppers(t)
			dir := t.TempDir()
			stateDir := filepath.Join(dir, "state")
			one := filepath.Join(dir, "one.tar")
			lc(t, false, "commit", "-q", "--from", "docker-archive:"+base, "--upper", upA, "-c", `CMD ["/bin/sh"]`, "-o", "docker-archive:"+one)
			load := func(t *testing.T, args ...string) (string, string) {
				t.Helper()
				out := filepath.Join(t.TempDir(), "out.tar")
				name := oracle.Tag("lc-test/shape")
				id, _ := lc(t, false, append(append([]string{"commit", "-q", "--from", "docker-archive:" + one, "--upper", upB, "--state-dir", stateDir}, args...), "-o", "docker-archive:"+out+":"+name)...)
				checkImage(t, "docker-archive:"+out)
				t.Cleanup(func() { d.Try("rmi", "-f", name) })
				d.Run(t, "load", "-i", out)
				if got := d.Run(t, "image", "inspect", "-f", "{{.Id}}", name); got != id {
					t.Fatalf("docker loaded %s, we made %s", got, id)
				}
				return name, id
			}
			run := func(t *testing.T, name, script string) string {
				t.Helper()
				return d.Run(t, "run", "--rm", "--network", "none", name, "sh", "-c", script)
			}
			layers := func(t *testing.T, name string) int {
				t.Helper()
				return len(strings.Fields(d.Run(t, "image", "inspect", "-f", "{{range .RootFS.Layers}}{{.}} {{end}}", name)))
			}
			history := func(t *testing.T, name string) int {
				t.Helper()
				return len(strings.Split(d.Run(t, "history", "-q", "--no-trunc", name), "\n"))
			}

			t.Run("exclude", func(t *testing.T) {
				name, _ := load(t, "--exclude", "etc/group", "--exclude", "**/*.log", "--exclude", "big")
				got := run(t, name, `cat /etc/group; ls /tmp; ls /app; cat /new.txt; ls /big 2>&1 || true`)
				want := "root:x:0:\nnogroup:x:65534:\none\none-link\nnew\nls: /big: No such file or directory"
				if got != want {
					t.Fatalf("container sees:\n%s\nwant:\n%s", got, want)
				}
			})
			t.Run("squash", func(t *testing.T) {
				name, _ := load(t, "--squash", "-m", "squashed")
				if n := layers(t, name); n != 1 {
					t.Fatalf("%d layers, want 1", n)
				}
				if n := history(t, name); n != 1 {
					t.Fatalf("%d history entries, want 1", n)
				}
				if c := d.Run(t, "history", "--format", "{{.Comment}}", name); c != "squashed" {
					t.Fatalf("history comment %q", c)
				}
				got := run(t, name, `cat /data/basefile; ls /app; test -e /etc/group || echo no group; cat /new.txt; test "$(stat -c %i /app/one)" = "$(stat -c %i /app/one-link)" && echo linked; /bin/busybox true && echo busybox`)
				want := "changed in a\none\none-link\nno group\nnew\nlinked\nbusybox"
				if got != want {
					t.Fatalf("container sees:\n%s\nwant:\n%s", got, want)
				}
				// Excluded from a squash, a path is gone from the image:
				// there is no base below it any more.
				name, _ = load(t, "--squash", "--exclude", "data/basefile", "--exclude", "app/one-link")
				got = run(t, name, `ls /data; ls /app; test "$(stat -c %h /app/one)" = 1 && echo one name`)
				if want := "one\none name"; got != want {
					t.Fatalf("container of the squash with --exclude sees:\n%s\nwant:\n%s", got, want)
				}
				// Squashing again reuses the unpacked layers and gives the
				// same image.
				_, id1 := load(t, "--squash", "--source-date-epoch", "1600000000")
				_, id2 := load(t, "--squash", "--source-date-epoch", "1600000000")
				if id1 != id2 {
					t.Fatalf("two squashes gave %s and %s", id1, id2)
				}
			})
			t.Run("source-date-epoch", func(t *testing.T) {
				const epoch = 1600000000
				old := time.Unix(1500000000, 0)
				must(t, fixtures.Apply(upB, fixtures.CreateFile("old.txt", []byte("old\n"), 0o644), fixtures.Chtimes("old.txt", old, old)))
				name, id := load(t, "--source-date-epoch", fmt.Sprint(epoch))
				// Later: touch everything else in the upper dir to a later
				// time (the whiteouts too) and commit through the
				// environment.
				later := time.Now().Add(time.Hour)
				must(t, filepath.Walk(upB, func(p string, _ os.FileInfo, err error) error {
					if err != nil || p == filepath.Join(upB, "old.txt") {
						return err
					}
					return fixtures.Chtimes(strings.TrimPrefix(p, upB), later, later)(upB)
				}))
				t.Setenv("SOURCE_DATE_EPOCH", fmt.Sprint(epoch))
				_, again := load(t)
				if again != id {
					t.Fatalf("same upper dir, touched later, gave %s, then %s", id, again)
				}
				if c := d.Run(t, "image", "inspect", "-f", "{{.Created}}", name); !strings.HasPrefix(c, "2020-09-13 12:26:40 +0000") && c != "2020-09-13T12:26:40Z" {
					t.Fatalf("created %q, want 2020-09-13T12:26:40Z", c)
				}
				// Later mtimes clamped to the epoch, an earlier one kept.
				got := run(t, name, `stat -c %Y /new.txt /big/f0 /app /old.txt`)
				if want := fmt.Sprintf("%d\n%d\n%d\n1500000000", epoch, epoch, epoch); got != want {
					t.Fatalf("mtimes:\n%s\nwant:\n%s", got, want)
				}
			})
			t.Run("max-layer-size", func(t *testing.T) {
				name, _ := load(t, "--max-layer-size", "400k")
				// busybox, a, then b in at least three parts (three 300 KiB files).
				if n := layers(t, name); n < 5 {
					t.Fatalf("%d layers, want at least 5", n)
				}
				// big/link is a link of big/f0 in another part: a file of
				// its own there (a link into an earlier layer fails docker
				// load).
				got := run(t, name, `/bin/busybox md5sum /big/f0 /big/f1 /big/f2; /bin/busybox md5sum /big/link; test -e /etc/group || echo no group; cat /new.txt /app/one`)
				want := ""
				for i := range 3 {
					b, err := os.ReadFile(filepath.Join(upB, "big", fmt.Sprintf("f%d", i)))
					must(t, err)
					want += fmt.Sprintf("%x  /big/f%d\n", md5.Sum(b), i)
				}
				b, err := os.ReadFile(filepath.Join(upB, "big", "f0"))
				must(t, err)
				want += fmt.Sprintf("%x  /big/link\n", md5.Sum(b))
				want += "no group\nnew\none"
				if got != want {
					t.Fatalf("container sees:\n%s\nwant:\n%s", got, want)
				}
			})
		})
	}
}

// TestCommitShapingBadInput: bad shaping options and a squash over a base
// whose layer does not match its diffID fail with one line and write
// nothing.
func TestCommitShapingBadInput(t *testing.T) {
	oracle.Root(t)
	upA, upB := shapeUppers(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.tar")
	lc(t, false, "commit", "-q", "--compression", "none", "--upper", upA, "-o", "docker-archive:"+good)
	bad := filepath.Join(dir, "bad.tar")
	corruptLayer(t, good, bad)
	out := filepath.Join(dir, "out")
	stateDir := filepath.Join(t.TempDir(), "state")
	before := snapshot(t, dir)
	for _, tc := range []struct {
		name string
		env  string
		args []string
		want string
	}{
		{"invalid pattern", "", []string{"--exclude", "[", "--upper", upB}, "bad --exclude pattern"},
		{"invalid pattern with squash", "", []string{"--squash", "--exclude", "a[", "--from", "docker-archive:" + good, "--upper", upB}, "bad --exclude pattern"},
		{"squash over an unreadable base", "", []string{"--squash", "--from", "docker-archive:" + bad, "--upper", upB}, "digest mismatch"},
		{"squash over a missing base", "", []string{"--squash", "--from", "docker-archive:" + filepath.Join(dir, "nope.tar"), "--upper", upB}, "no such file"},
		{"squash with the naive source", "", []string{"--squash", "--source", "naive", "--upper", upB}, "--squash reads an overlay upper dir"},
		{"squash of a container, bad size", "", []string{"--squash", "--container", "x", "--max-layer-size", "0"}, `bad --max-layer-size "0"`},
		{"bad epoch", "", []string{"--source-date-epoch", "12abc", "--upper", upB}, `bad --source-date-epoch "12abc"`},
		{"bad SOURCE_DATE_EPOCH", "-1", []string{"--upper", upB}, `bad SOURCE_DATE_EPOCH "-1"`},
		{"epoch and created", "", []string{"--source-date-epoch", "1", "--created", testCreated, "--upper", upB}, "give one of --created and --source-date-epoch"},
		{"bad size", "", []string{"--max-layer-size", "12XB", "--upper", upB}, `bad --max-layer-size "12XB"`},
		{"zero size", "", []string{"--max-layer-size", "0", "--upper", upB}, `bad --max-layer-size "0"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SOURCE_DATE_EPOCH", tc.env)
			_, stderr := lc(t, true, append(append([]string{"commit", "-q", "--state-dir", stateDir}, tc.args...), "-o", "oci:"+out)...)
			assertCommitError(t, stderr, tc.want)
			if after := snapshot(t, dir); after != before {
				t.Fatalf("the failed commit wrote:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// corruptLayer copies the docker-archive src to dst with one byte of the
// first layer's file data flipped (the tar stays readable).
func corruptLayer(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	must(t, err)
	defer in.Close()
	var buf bytes.Buffer
	tr, tw := tar.NewReader(in), tar.NewWriter(&buf)
	done := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		b, err := io.ReadAll(tr)
		must(t, err)
		if !done && h.Typeflag == tar.TypeReg && h.Name != "manifest.json" && !strings.HasSuffix(h.Name, ".json") && bytes.Contains(b, []byte("changed in a\n")) {
			// An uncompressed layer: change the data of
			// /data/basefile, so the tar stays readable.
			b[bytes.Index(b, []byte("changed in a\n"))] = 'C'
			done = true
		}
		must(t, tw.WriteHeader(h))
		_, err = tw.Write(b)
		must(t, err)
	}
	must(t, tw.Close())
	if !done {
		t.Fatal("no layer found to corrupt")
	}
	must(t, os.WriteFile(dst, buf.Bytes(), 0o644))
}

// TestCommitContainerShaping: --exclude and --source-date-epoch on a
// container of each daemon's data root: the excluded deletion leaves the
// base's file, the excluded log is gone, mtimes are clamped, and two
// commits of the container give one image ID.
func TestCommitContainerShaping(t *testing.T) {
	for _, daemon := range []struct {
		name string
		new  func(testing.TB) *oracle.Docker
	}{{"docker20", oracle.NewDocker}, {"docker29", oracle.NewDocker29}} {
		t.Run(daemon.name, func(t *testing.T) {
			d := daemon.new(t)
			name := fmt.Sprintf("lc-shape-%d", time.Now().UnixNano())
			d.Run(t, "run", "--name", name, "--network", "none", d.Base, "sh", "-c", "rm /etc/group; echo log > /tmp/x.log; echo new > /new.txt")
			t.Cleanup(func() { d.Try("rm", "-f", name) })
			dir := t.TempDir()
			var ids []string
			for i := range 2 {
				out := filepath.Join(dir, fmt.Sprintf("c%d.tar", i))
				tag := oracle.Tag("lc-test/shape-ctr")
				id, _ := lc(t, false, "commit", "-q", "--docker-root", d.Root, "--container", name,
					"--exclude", "etc/group", "--exclude", "tmp/*.log", "--source-date-epoch", "1600000000",
					"-o", "docker-archive:"+out+":"+tag)
				ids = append(ids, id)
				if i == 0 {
					t.Cleanup(func() { d.Try("rmi", "-f", tag) })
					d.Run(t, "load", "-i", out)
					got := d.Run(t, "run", "--rm", "--network", "none", tag, "sh", "-c", `cat /etc/group; ls /tmp; cat /new.txt; stat -c %Y /new.txt`)
					if want := "root:x:0:\nnogroup:x:65534:\nnew\n1600000000"; got != want {
						t.Fatalf("container sees:\n%s\nwant:\n%s", got, want)
					}
				}
			}
			if ids[0] != ids[1] {
				t.Fatalf("two commits of the container gave %s and %s", ids[0], ids[1])
			}
		})
	}
}
