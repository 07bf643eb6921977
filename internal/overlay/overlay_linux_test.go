package overlay

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/internal/oracle"
)

// paths names the two ways Mount reaches the kernel; every test runs
// through both.
var paths = []struct {
	name   string
	legacy bool
}{{"fsconfig", false}, {"mount2", true}}

func eachPath(t *testing.T, f func(t *testing.T)) {
	oracle.Root(t)
	if !haveLowerdirPlus() {
		oracle.Missing(t, "the kernel has no fsconfig lowerdir+ (Linux 6.8)")
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			forceLegacy = p.legacy
			t.Cleanup(func() { forceLegacy = false })
			f(t)
		})
	}
}

func mkdirs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func write(t *testing.T, p, data string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// mountT mounts and unmounts at cleanup.
func mountT(t *testing.T, target string, o Options) {
	t.Helper()
	if err := Mount(target, o); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(target, 0); err != nil {
			t.Errorf("unmounting %s: %v", target, err)
		}
	})
}

// mountEntry reads target's line of /proc/self/mountinfo.
func mountEntry(t *testing.T, target string) *mountinfo.Info {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(target))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 {
		t.Fatalf("%d mounts at %s", len(ms), target)
	}
	return ms[0]
}

// TestMountNames: dirs whose names hold the characters the kernel's
// option parser splits at (',' between options, ':' between lowers) or
// unescapes ('\') are mounted as themselves.
func TestMountNames(t *testing.T) {
	eachPath(t, func(t *testing.T) {
		tmp := t.TempDir()
		lowers := []string{filepath.Join(tmp, "top:a,b"), filepath.Join(tmp, `mid\x`), filepath.Join(tmp, "bot::,,")}
		upper, work, merged := filepath.Join(tmp, "up,per:1"), filepath.Join(tmp, `wo\rk,:`), filepath.Join(tmp, "mer:ged")
		mkdirs(t, append(lowers, upper, work, merged)...)
		for i, l := range lowers {
			write(t, filepath.Join(l, fmt.Sprintf("f%d", i)), l)
			write(t, filepath.Join(l, "shared"), l)
		}
		mountT(t, merged, Options{Lowers: lowers, Upper: upper, Work: work})
		for i, l := range lowers {
			if got := read(t, filepath.Join(merged, fmt.Sprintf("f%d", i))); got != l {
				t.Errorf("f%d = %q, want %q", i, got, l)
			}
		}
		if got := read(t, filepath.Join(merged, "shared")); got != lowers[0] {
			t.Errorf("shared = %q, want the top lower's", got)
		}
		write(t, filepath.Join(merged, "new"), "x")
		if got := read(t, filepath.Join(upper, "new")); got != "x" {
			t.Errorf("upper/new = %q", got)
		}
	})
}

// TestMountManyLowers: images of more layers than fit into one page of
// mount(2) options with their full paths.
func TestMountManyLowers(t *testing.T) {
	for _, n := range []int{128, 200} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			eachPath(t, func(t *testing.T) {
				// Deep paths, as a state dir's layers/<diffID> are.
				tmp := filepath.Join(t.TempDir(), strings.Repeat("d", 64))
				lowers := make([]string, n)
				for i := range lowers {
					lowers[i] = filepath.Join(tmp, fmt.Sprintf("layer-%064d", n-1-i))
					mkdirs(t, lowers[i])
					write(t, filepath.Join(lowers[i], fmt.Sprintf("f%d", n-1-i)), "x")
					write(t, filepath.Join(lowers[i], "which"), fmt.Sprint(n-1-i))
				}
				if len(legacyOptions(lowers, Options{})) < os.Getpagesize() {
					t.Fatal("the test's lowers fit in a page")
				}
				upper, work, merged := filepath.Join(tmp, "upper"), filepath.Join(tmp, "work"), filepath.Join(tmp, "merged")
				mkdirs(t, upper, work, merged)
				mountT(t, merged, Options{Lowers: lowers, Upper: upper, Work: work})
				for _, f := range []string{"f0", fmt.Sprintf("f%d", n-1)} {
					if _, err := os.Stat(filepath.Join(merged, f)); err != nil {
						t.Errorf("bottom or top layer's file: %v", err)
					}
				}
				if got := read(t, filepath.Join(merged, "which")); got != fmt.Sprint(n-1) {
					t.Errorf("which = %s, want the top layer's %d", got, n-1)
				}
			})
		})
	}
}

// TestMountReadOnly: without an upper, and with one and ReadOnly, the
// merged view cannot be written.
func TestMountReadOnly(t *testing.T) {
	eachPath(t, func(t *testing.T) {
		tmp := t.TempDir()
		a, b, upper, work := filepath.Join(tmp, "a"), filepath.Join(tmp, "b"), filepath.Join(tmp, "upper"), filepath.Join(tmp, "work")
		m1, m2 := filepath.Join(tmp, "m1"), filepath.Join(tmp, "m2")
		mkdirs(t, a, b, upper, work, m1, m2)
		write(t, filepath.Join(b, "f"), "b")
		mountT(t, m1, Options{Lowers: []string{a, b}})
		mountT(t, m2, Options{Lowers: []string{b}, Upper: upper, Work: work, ReadOnly: true})
		for _, m := range []string{m1, m2} {
			if got := read(t, filepath.Join(m, "f")); got != "b" {
				t.Errorf("%s/f = %q", m, got)
			}
			if err := os.WriteFile(filepath.Join(m, "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
				t.Errorf("writing into %s: %v, want EROFS", m, err)
			}
			// Without an upper the super block is read-only, with
			// ReadOnly the mount.
			if e := mountEntry(t, m); !strings.Contains(","+e.Options+","+e.VFSOptions+",", ",ro,") {
				t.Errorf("%s: neither %q nor %q has ro", m, e.Options, e.VFSOptions)
			}
		}
	})
}

// TestMountPinned: the overlay has no index, no redirects and no
// metacopy. The kernel does not list options at their default in
// mountinfo, so the test checks that none is on there and that the
// overlay behaves as with them off; Extra options do show, which proves
// that what Mount passes reaches the kernel.
func TestMountPinned(t *testing.T) {
	eachPath(t, func(t *testing.T) {
		tmp := t.TempDir()
		lower, upper, work, merged := filepath.Join(tmp, "lower"), filepath.Join(tmp, "upper"), filepath.Join(tmp, "work"), filepath.Join(tmp, "merged")
		mkdirs(t, filepath.Join(lower, "dir"), upper, work, merged)
		write(t, filepath.Join(lower, "file"), "lower data")
		mountT(t, merged, Options{Lowers: []string{lower}, Upper: upper, Work: work})
		e := mountEntry(t, merged)
		if e.FSType != "overlay" {
			t.Fatalf("fs type %q", e.FSType)
		}
		for _, on := range []string{"index=on", "metacopy=on", "redirect_dir=on"} {
			if strings.Contains(e.VFSOptions, on) {
				t.Errorf("mount has %s: %s", on, e.VFSOptions)
			}
		}
		if _, err := os.Stat(filepath.Join(work, "index")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("index=off leaves no work/index: %v", err)
		}
		// redirect_dir=off: a lower dir cannot be renamed.
		if err := os.Rename(filepath.Join(merged, "dir"), filepath.Join(merged, "moved")); !errors.Is(err, unix.EXDEV) {
			t.Errorf("renaming a lower dir: %v, want EXDEV", err)
		}
		// metacopy=off: a chmod copies the data up.
		if err := os.Chmod(filepath.Join(merged, "file"), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := read(t, filepath.Join(upper, "file")); got != "lower data" {
			t.Errorf("upper/file after chmod = %q, want the data copied up", got)
		}
		if _, err := unix.Lgetxattr(filepath.Join(upper, "file"), "trusted.overlay.metacopy", nil); err == nil {
			t.Error("upper/file is a metacopy")
		}

		// An Extra option is given after the pinned ones and wins.
		m2, u2, w2 := filepath.Join(tmp, "m2"), filepath.Join(tmp, "u2"), filepath.Join(tmp, "w2")
		mkdirs(t, m2, u2, w2)
		mountT(t, m2, Options{Lowers: []string{lower}, Upper: u2, Work: w2, Extra: []string{"redirect_dir=on"}})
		if e := mountEntry(t, m2); !strings.Contains(e.VFSOptions, "redirect_dir=on") {
			t.Errorf("Extra redirect_dir=on not in %q", e.VFSOptions)
		}
	})
}

// TestMountRefused: options the kernel refuses fail the mount with an
// error naming the pinned options; nothing is mounted without them.
func TestMountRefused(t *testing.T) {
	eachPath(t, func(t *testing.T) {
		tmp := t.TempDir()
		lower, upper, work, merged := filepath.Join(tmp, "lower"), filepath.Join(tmp, "upper"), filepath.Join(tmp, "work"), filepath.Join(tmp, "merged")
		mkdirs(t, lower, upper, work, merged)
		// metacopy=on conflicts with the pinned redirect_dir=off.
		err := Mount(merged, Options{Lowers: []string{lower}, Upper: upper, Work: work, Extra: []string{"metacopy=on"}})
		if err == nil {
			unix.Unmount(merged, 0)
			t.Fatal("mounted with conflicting options")
		}
		if !strings.Contains(err.Error(), Pinned) || strings.Contains(err.Error(), "\n") {
			t.Errorf("error does not name %s on one line: %v", Pinned, err)
		}
		if ms, _ := mountinfo.GetMounts(mountinfo.SingleEntryFilter(merged)); len(ms) != 0 {
			t.Errorf("something is mounted at %s: %+v", merged, ms[0])
		}
	})
}

// TestMountTooLong: when even short lower names cannot fit the upper and
// work dirs into a page, mount(2) fails with ErrTooLong.
func TestMountTooLong(t *testing.T) {
	oracle.Root(t)
	forceLegacy = true
	t.Cleanup(func() { forceLegacy = false })
	tmp := t.TempDir()
	long := tmp
	for range 9 {
		long = filepath.Join(long, strings.Repeat("x", 240))
	}
	a, b, upper, work, merged := filepath.Join(tmp, "a"), filepath.Join(tmp, "b"), filepath.Join(long, "upper"), filepath.Join(long, "work"), filepath.Join(tmp, "merged")
	mkdirs(t, a, b, upper, work, merged)
	err := Mount(merged, Options{Lowers: []string{a, b}, Upper: upper, Work: work})
	if !errors.Is(err, ErrTooLong) {
		t.Fatalf("got %v, want ErrTooLong", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %v", err)
	}
}

func TestMountChecks(t *testing.T) {
	for _, c := range []struct {
		name string
		o    Options
	}{
		{"no lowers", Options{}},
		{"one lower, no upper", Options{Lowers: []string{"/a"}}},
		{"upper without work", Options{Lowers: []string{"/a"}, Upper: "/u"}},
		{"empty lower", Options{Lowers: []string{"/a", ""}}},
		{"NUL in a dir", Options{Lowers: []string{"/a", "/b\x00"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := Mount("/nonexistent", c.o); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"/plain":    "/plain",
		"/a:b":      `/a\:b`,
		"/a,b":      `/a\,b`,
		`/a\b`:      `/a\\b`,
		`/:,\`:      `/\:\,\\`,
		"/sp ce\t/": "/sp ce\t/",
	} {
		if got := escape(in); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestMountVolatile: a Volatile mount is the kernel's volatile overlay
// (listed so in mountinfo, the work dir marked incompat/volatile, which
// makes the kernel refuse the dir again); without Volatile neither.
func TestMountVolatile(t *testing.T) {
	if !HaveVolatile() {
		oracle.Missing(t, "the kernel has no volatile overlay (Linux 5.10)")
	}
	eachPath(t, func(t *testing.T) {
		for _, volatile := range []bool{false, true} {
			tmp := t.TempDir()
			lower, upper, work, m := filepath.Join(tmp, "l"), filepath.Join(tmp, "u"), filepath.Join(tmp, "w"), filepath.Join(tmp, "m")
			mkdirs(t, lower, upper, work, m)
			o := Options{Lowers: []string{lower}, Upper: upper, Work: work, Volatile: volatile}
			if err := Mount(m, o); err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(m, "f"), "x")
			e := mountEntry(t, m)
			// Newer kernels list it as fsync=volatile.
			vo := "," + e.VFSOptions + ","
			listed := strings.Contains(vo, ",volatile,") || strings.Contains(vo, ",fsync=volatile,")
			if err := unix.Unmount(m, 0); err != nil {
				t.Fatal(err)
			}
			if got := read(t, filepath.Join(upper, "f")); got != "x" {
				t.Errorf("volatile=%t: upper/f = %q", volatile, got)
			}
			_, serr := os.Stat(filepath.Join(work, "work", "incompat", "volatile"))
			if listed != volatile || (serr == nil) != volatile {
				t.Errorf("volatile=%t: mountinfo %q, incompat/volatile: %v", volatile, e.VFSOptions, serr)
			}
			err := Mount(m, o)
			if err == nil {
				unix.Unmount(m, 0)
			}
			if (err != nil) != volatile {
				t.Errorf("volatile=%t: mounting the dirs again: %v", volatile, err)
			}
		}
	})
}

func TestKernelAtLeast(t *testing.T) {
	for _, tc := range []struct {
		rel  string
		want bool
	}{
		{"6.1.0-18-amd64", true}, {"5.10.0", true}, {"5.9.16", false}, {"4.19.0-26-amd64", false},
		{"5.15.0-1051-azure", true}, {"10.0", true}, {"garbage", false}, {"", false},
	} {
		if got := kernelAtLeast(tc.rel, 5, 10); got != tc.want {
			t.Errorf("kernelAtLeast(%q, 5, 10) = %t, want %t", tc.rel, got, tc.want)
		}
	}
}

// TestMountFuseVolatile: a Volatile fuse-overlayfs mount runs with
// fsync=0 (read off the fuse-overlayfs process of the mount), one
// without Volatile does not.
func TestMountFuseVolatile(t *testing.T) {
	oracle.Root(t)
	if _, err := exec.LookPath(FuseProgram); err != nil {
		oracle.Missing(t, "fuse-overlayfs not installed")
	}
	for _, volatile := range []bool{false, true} {
		tmp := t.TempDir()
		lower, upper, work, m := filepath.Join(tmp, "l"), filepath.Join(tmp, "u"), filepath.Join(tmp, "w"), filepath.Join(tmp, "m")
		mkdirs(t, lower, upper, work, m)
		if err := Mount(m, Options{Lowers: []string{lower}, Upper: upper, Work: work, Fuse: true, Volatile: volatile}); err != nil {
			t.Fatal(err)
		}
		args := fuseArgs(t, m)
		if err := unix.Unmount(m, 0); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(args, ",fsync=0"); got != volatile {
			t.Errorf("volatile=%t: fuse-overlayfs runs as %q", volatile, args)
		}
	}
}

// fuseArgs is the command line of the fuse-overlayfs process serving
// the mount at target.
func fuseArgs(t *testing.T, target string) string {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) > 0 && filepath.Base(args[0]) == FuseProgram && args[len(args)-1] == target {
			return strings.Join(args, " ")
		}
	}
	t.Fatalf("no fuse-overlayfs process serves %s", target)
	return ""
}
