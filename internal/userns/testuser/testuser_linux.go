// Package testuser makes, for one test, an ordinary user with
// subordinate ids, so that tests (running as root) can run programs as
// that user with no sudo, as a rootless CI job would.
package testuser

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/layercommit/layercommit/internal/oracle"
)

// Count is the size of each user's subordinate range.
const Count = 65536

// User is an ordinary user made for one test; it is removed (with its
// home and its /etc/subuid and /etc/subgid lines) when the test ends.
type User struct {
	Name     string
	UID, GID int
	Home     string
	// SubID is the first id of the subordinate uid and gid range
	// (Count ids), 0 for a user made WithoutSubIDs.
	SubID int
}

// Option changes how New makes the user.
type Option func(*opts)

type opts struct{ noSubIDs bool }

// WithoutSubIDs makes a user with no subordinate ranges.
func WithoutSubIDs() Option { return func(o *opts) { o.noSubIDs = true } }

// New makes a user with a unique name and, unless WithoutSubIDs, a
// subordinate uid and gid range of Count ids starting at SubID, chosen at
// random above 2^20 so that concurrent tests do not share one. It needs
// root, useradd, usermod, userdel and setpriv.
func New(t testing.TB, options ...Option) *User {
	t.Helper()
	var o opts
	for _, opt := range options {
		opt(&o)
	}
	oracle.Root(t)
	for _, tool := range []string{"useradd", "usermod", "userdel", "setpriv"} {
		oracle.Tool(t, tool)
	}
	name := fmt.Sprintf("lcrl%08x", rand.Uint32())
	if out, err := exec.Command("useradd", "--create-home", "--user-group", "--shell", "/bin/sh",
		"-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", "--remove", "--force", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v: %s", name, err, out)
		}
	})
	pw, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	u := &User{Name: name, Home: pw.HomeDir}
	u.UID, _ = strconv.Atoi(pw.Uid)
	u.GID, _ = strconv.Atoi(pw.Gid)
	if !o.noSubIDs {
		u.SubID = 1<<20 + rand.IntN(15000)*Count
		r := fmt.Sprintf("%d-%d", u.SubID, u.SubID+Count-1)
		if out, err := exec.Command("usermod", "--add-subuids", r, "--add-subgids", r, name).CombinedOutput(); err != nil {
			t.Fatalf("usermod --add-subuids %s %s: %v: %s", r, name, err, out)
		}
	}
	return u
}

// HostID is the host id that id of the user's namespace (rootless
// podman's mapping) is stored as.
func (u *User) HostID(id int) int {
	if id == 0 {
		return u.UID
	}
	return u.SubID + id - 1
}

// Env is the environment the user's commands get: HOME, USER, LOGNAME,
// a standard PATH, and extra ("K=V").
func (u *User) Env(extra ...string) []string {
	return append([]string{"HOME=" + u.Home, "USER=" + u.Name, "LOGNAME=" + u.Name,
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, extra...)
}

// Command runs name with args as the user (setpriv, its own groups, no
// capabilities kept) with Env(env...), in the user's home.
func (u *User) Command(env []string, name string, args ...string) *exec.Cmd {
	a := []string{"--reuid=" + strconv.Itoa(u.UID), "--regid=" + strconv.Itoa(u.GID), "--init-groups",
		"env", "-i"}
	a = append(a, u.Env(env...)...)
	a = append(a, name)
	a = append(a, args...)
	cmd := exec.Command("setpriv", a...)
	cmd.Dir = u.Home
	return cmd
}

// Dir makes a fresh dir owned by the user in its home (removed with the
// user).
func (u *User) Dir(t testing.TB) string {
	t.Helper()
	d := filepath.Join(u.Home, "t"+strconv.FormatUint(rand.Uint64(), 36))
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d, u.UID, u.GID); err != nil {
		t.Fatal(err)
	}
	return d
}

// Executable copies the program at src to a dir the user can read and
// returns its path there (go test's build dirs are root's alone).
func Executable(t testing.TB, src string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lcrl-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(src))
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// Output runs cmd and returns its stdout, failing the test with its
// stderr when it fails.
func Output(t testing.TB, cmd *exec.Cmd) string {
	t.Helper()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s%s", strings.Join(cmd.Args, " "), err, out, stderr.String())
	}
	return string(out)
}
