package userns_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/internal/userns"
	"github.com/layercommit/layercommit/internal/userns/testuser"
)

// The test binary is also the program under test: run as an ordinary
// user with LCRL_PROBE set, it re-executes itself through Reexec (as
// cmd/layercommit's main does) and, inside, reports what it is.
func TestMain(m *testing.M) {
	userns.Main()
	if os.Getenv("LCRL_PROBE") != "" {
		os.Exit(probe())
	}
	os.Exit(m.Run())
}

func probe() int {
	if userns.Needed() {
		mode, err := userns.ParseMode(os.Getenv("LCRL_MODE"))
		if err == nil {
			var code int
			code, err = userns.Reexec(userns.Config{Mode: mode, Newuidmap: os.Getenv("LCRL_NEWUIDMAP")}, os.Args[1:])
			if err == nil {
				return code
			}
		}
		fmt.Fprintf(os.Stderr, "layercommit: %v\n", err)
		return 1
	}
	uidMap, _ := os.ReadFile("/proc/self/uid_map")
	gidMap, _ := os.ReadFile("/proc/self/gid_map")
	caller, _ := userns.Caller()
	fmt.Printf("mode=%s uid=%d gid=%d caller=%d\n", userns.Inside(), os.Getuid(), os.Getgid(), caller)
	fmt.Printf("uid_map=%s\n", strings.Join(strings.Fields(string(uidMap)), " "))
	fmt.Printf("gid_map=%s\n", strings.Join(strings.Fields(string(gidMap)), " "))
	dir := os.Getenv("LCRL_DIR")
	// Mounting needs CAP_SYS_ADMIN over the namespace's mounts.
	m := filepath.Join(dir, "m")
	if err := os.Mkdir(m, 0o755); err != nil {
		fmt.Println("mkdir:", err)
	}
	fmt.Println("mount:", errText(unix.Mount("tmpfs", m, "tmpfs", 0, "")))
	_ = unix.Unmount(m, 0)
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		fmt.Println("write:", err)
	}
	fmt.Println("chown:", errText(os.Lchown(f, 1500, 1501)))
	if c, _ := strconv.Atoi(os.Getenv("LCRL_EXIT")); c != 0 {
		return c
	}
	return 0
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return err.Error()
}

// run runs the probe as u and returns its stdout, stderr and exit code.
func run(t *testing.T, u *testuser.User, bin string, env ...string) (string, string, int) {
	t.Helper()
	cmd := u.Command(append([]string{"LCRL_PROBE=1"}, env...), bin, "arg1")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func owner(t *testing.T, p string) (int, int) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return int(st.Uid), int(st.Gid)
}

// TestReexec: an ordinary user with subordinate ids, running the program
// with no sudo, gets it again inside a user namespace where it is uid 0
// with rootless podman's map (0 → itself, 1..65536 → its range), can
// mount, and a chown to 1500:1501 there lands on the host as the
// subordinate ids 1499 and 1500 past the range's start; the exit status
// comes back. With --userns=single only the caller is mapped and the
// chown fails.
func TestReexec(t *testing.T) {
	u := testuser.New(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := testuser.Executable(t, self)
	t.Run("subids", func(t *testing.T) {
		dir := u.Dir(t)
		out, stderr, code := run(t, u, bin, "LCRL_DIR="+dir, "LCRL_EXIT=7")
		want := fmt.Sprintf("mode=subids uid=0 gid=0 caller=%d\nuid_map=0 %d 1 1 %d %d\ngid_map=0 %d 1 1 %d %d\nmount: ok\nchown: ok\n",
			u.UID, u.UID, u.SubID, testuser.Count, u.GID, u.SubID, testuser.Count)
		if out != want || code != 7 {
			t.Fatalf("exit %d, stdout:\n%s\nwant exit 7 and\n%s\nstderr: %s", code, out, want, stderr)
		}
		if uid, gid := owner(t, filepath.Join(dir, "f")); uid != u.HostID(1500) || gid != u.HostID(1501) {
			t.Fatalf("file chowned to 1500:1501 inside is %d:%d on the host, want %d:%d", uid, gid, u.HostID(1500), u.HostID(1501))
		}
	})
	t.Run("single", func(t *testing.T) {
		dir := u.Dir(t)
		out, stderr, code := run(t, u, bin, "LCRL_DIR="+dir, "LCRL_MODE=single")
		want := fmt.Sprintf("mode=single uid=0 gid=0 caller=%d\nuid_map=0 %d 1\ngid_map=0 %d 1\nmount: ok\nchown: invalid argument\n", u.UID, u.UID, u.GID)
		if out != want || code != 0 {
			t.Fatalf("exit %d, stdout:\n%s\nwant\n%s\nstderr: %s", code, out, want, stderr)
		}
		if uid, gid := owner(t, filepath.Join(dir, "f")); uid != u.UID || gid != u.GID {
			t.Fatalf("file made inside is %d:%d on the host, want the caller's %d:%d", uid, gid, u.UID, u.GID)
		}
	})
}

// TestRefused: what stops a rootless start is one line naming the
// missing piece and its fix: no subordinate ids, newuidmap missing or
// not setuid, and a kernel that refuses user namespaces (a real refusal:
// the probe runs in a user namespace whose user.max_user_namespaces its
// root set to 0).
func TestRefused(t *testing.T) {
	u := testuser.New(t)
	bare := testuser.New(t, testuser.WithoutSubIDs())
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := testuser.Executable(t, self)
	// newuidmap without its setuid bit.
	plain := filepath.Join(filepath.Dir(bin), "newuidmap")
	b, err := os.ReadFile("/usr/bin/newuidmap")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plain, b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		u    *testuser.User
		env  []string
		want string
	}{
		{"no subordinate ids", bare, nil, fmt.Sprintf("layercommit: rootless: no subordinate ids: user %s has no range in /etc/subuid: add a range as root (usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s) or map only yourself with --userns=single", bare.Name, bare.Name)},
		{"newuidmap missing", u, []string{"LCRL_NEWUIDMAP=/nonexistent/newuidmap"}, "layercommit: rootless: setuid id-map helper missing: newuidmap not found (Debian: apt-get install uidmap), or map only yourself with --userns=single"},
		{"newuidmap not setuid", u, []string{"LCRL_NEWUIDMAP=" + plain}, "(is it setuid root? Debian's uidmap installs it so)"},
		{"bad mode", u, []string{"LCRL_MODE=keep-id"}, `layercommit: rootless: unknown user namespace mode "keep-id" (want subids, single or host)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, code := run(t, tc.u, bin, append(tc.env, "LCRL_DIR="+tc.u.Dir(t))...)
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if code != 1 || out != "" || len(lines) != 1 || !strings.HasPrefix(lines[0], "layercommit: ") || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1 and one line with %q", code, out, stderr, tc.want)
			}
		})
	}
	t.Run("user namespaces forbidden", func(t *testing.T) {
		// A user namespace mapping every id (so the test user exists in
		// it), whose root forbids further user namespaces, then the
		// probe as the user inside it.
		script := fmt.Sprintf("echo 0 > /proc/sys/user/max_user_namespaces && exec setpriv --reuid=%d --regid=%d --init-groups env -i HOME=%s PATH=/usr/bin:/bin LCRL_PROBE=1 %s",
			u.UID, u.GID, u.Home, bin)
		cmd := exec.Command("sh", "-c", script)
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:                 unix.CLONE_NEWUSER,
			UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1<<32 - 1}},
			GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1<<32 - 1}},
			GidMappingsEnableSetgroups: true,
		}
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		want := "layercommit: rootless: the kernel refuses to create a user namespace (no space left on device): sysctl user.max_user_namespaces is 0 (as root: sysctl -w user.max_user_namespaces=15000)"
		if err == nil || strings.TrimSpace(stderr.String()) != want || stdout.String() != "" {
			t.Fatalf("err %v, stdout %q, stderr %q; want exit 1 and %q", err, stdout.String(), stderr.String(), want)
		}
	})
}
