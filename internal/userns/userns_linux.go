package userns

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Mode is how the namespace maps ids.
type Mode string

const (
	// ModeSubIDs maps 0 to the caller and 1..N to its subordinate
	// ranges (rootless podman's mapping); the default.
	ModeSubIDs Mode = "subids"
	// ModeSingle maps only the caller, to 0: no subordinate ids and no
	// setuid helpers are needed, and every file is owned by root.
	ModeSingle Mode = "single"
	// ModeHost enters no namespace: the command runs as the caller
	// itself, with its own permissions (enough for diff or inspect of
	// what it can read); Reexec refuses it.
	ModeHost Mode = "host"
)

// ParseMode reads a mode as --userns and LAYERCOMMIT_USERNS spell it;
// "" is ModeSubIDs.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", ModeSubIDs:
		return ModeSubIDs, nil
	case ModeSingle, ModeHost:
		return Mode(s), nil
	}
	return "", fmt.Errorf("rootless: unknown user namespace mode %q (want subids, single or host)", s)
}

// stageEnv tells a re-executed process where it is: "wait" while it
// waits for its id maps (Main), then the Mode once inside.
const stageEnv = "_LAYERCOMMIT_USERNS"

// modeEnv carries the mode through the wait stage.
const modeEnv = "_LAYERCOMMIT_USERNS_MODE"

const stageWait = "wait"

// syncFD is the waiting child's end of the pipe on which the parent
// writes 'G' once the maps are written (EOF: it failed and reports why).
const syncFD = 3

// Config is where Reexec finds the mapping and the helpers. The zero
// value is the system's: /etc/subuid, /etc/subgid, /proc/sys, and
// newuidmap and newgidmap on the PATH.
type Config struct {
	Mode                   Mode
	SubUIDFile, SubGIDFile string
	// ProcSys is read to explain why the kernel refused a namespace.
	ProcSys string
	// Newuidmap and Newgidmap are the helpers' names or paths.
	Newuidmap, Newgidmap string
}

func (c Config) withDefaults() Config {
	if c.Mode == "" {
		c.Mode = ModeSubIDs
	}
	if c.SubUIDFile == "" {
		c.SubUIDFile = "/etc/subuid"
	}
	if c.SubGIDFile == "" {
		c.SubGIDFile = "/etc/subgid"
	}
	if c.ProcSys == "" {
		c.ProcSys = "/proc/sys"
	}
	if c.Newuidmap == "" {
		c.Newuidmap = "newuidmap"
	}
	if c.Newgidmap == "" {
		c.Newgidmap = "newgidmap"
	}
	return c
}

// Inside returns the mode of the namespace Reexec made when this process
// runs in one, else "".
func Inside() Mode {
	switch m := Mode(os.Getenv(stageEnv)); m {
	case ModeSubIDs, ModeSingle:
		return m
	}
	return ""
}

// Needed reports whether the program must Reexec: it is not root and
// not already inside the namespace.
func Needed() bool { return os.Geteuid() != 0 && Inside() == "" }

// Main finishes a re-execution that Reexec started: in the child that
// waits for its maps it waits, then executes the program again as uid 0
// of the namespace (which gives it the namespace's capabilities) and
// never returns. In any other process it returns at once. Call it first
// thing in main.
func Main() {
	if os.Getenv(stageEnv) != stageWait {
		return
	}
	os.Exit(waitAndExec())
}

func waitAndExec() int {
	f := os.NewFile(syncFD, "userns-sync")
	b := make([]byte, 1)
	if n, _ := io.ReadFull(f, b); n != 1 || b[0] != 'G' {
		return 125 // the parent failed and says why
	}
	f.Close()
	env := setEnv(os.Environ(), stageEnv, os.Getenv(modeEnv))
	err := unix.Exec("/proc/self/exe", os.Args, env)
	fmt.Fprintf(os.Stderr, "layercommit: rootless: executing itself in the user namespace: %v\n", err)
	return 125
}

// setEnv returns env with k set to v (and modeEnv dropped).
func setEnv(env []string, k, v string) []string {
	out := make([]string, 0, len(env)+1)
	for _, e := range env {
		if !strings.HasPrefix(e, k+"=") && !strings.HasPrefix(e, modeEnv+"=") {
			out = append(out, e)
		}
	}
	return append(out, k+"="+v)
}

// Reexec runs this program with args (os.Args[1:]) again inside a new
// user and mount namespace mapped as c.Mode says, with the same
// environment and standard streams, forwarding SIGINT, SIGTERM, SIGHUP
// and SIGQUIT to it, and returns its exit status (128+signal if it was
// killed). Everything that can be checked before starting (the
// subordinate ranges, the helpers) is; err is one line naming what is
// missing and how to get it.
func Reexec(c Config, args []string) (int, error) {
	c = c.withDefaults()
	self, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("rootless: finding own binary: %w", err)
	}
	uid, gid := os.Getuid(), os.Getgid()
	cmd := exec.Command(self, args...)
	cmd.Args[0] = os.Args[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	sys := &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUSER | unix.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	cmd.SysProcAttr = sys
	var uids, gids []IDMap
	var syncW *os.File
	switch c.Mode {
	case ModeSingle:
		sys.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}}
		sys.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}}
		sys.GidMappingsEnableSetgroups = false
		cmd.Env = setEnv(os.Environ(), stageEnv, string(ModeSingle))
	case ModeSubIDs:
		if uids, gids, err = Mappings(c, uid, gid); err != nil {
			return 0, err
		}
		if c.Newuidmap, err = helper(c.Newuidmap); err != nil {
			return 0, err
		}
		if c.Newgidmap, err = helper(c.Newgidmap); err != nil {
			return 0, err
		}
		r, w, err := os.Pipe()
		if err != nil {
			return 0, err
		}
		defer r.Close()
		defer w.Close()
		syncW = w
		cmd.ExtraFiles = []*os.File{r}
		cmd.Env = append(setEnv(os.Environ(), stageEnv, stageWait), modeEnv+"="+string(ModeSubIDs))
	default:
		return 0, fmt.Errorf("rootless: unknown user namespace mode %q", c.Mode)
	}
	if err := cmd.Start(); err != nil {
		return 0, diagnose(err, c.ProcSys)
	}
	if syncW != nil {
		cmd.ExtraFiles[0].Close()
		if err := writeMaps(c, cmd.Process.Pid, uids, gids); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return 0, err
		}
		if _, err := syncW.Write([]byte{'G'}); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return 0, fmt.Errorf("rootless: starting in the user namespace: %w", err)
		}
		syncW.Close()
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("rootless: running in the user namespace: %w", err)
	}
	return 0, nil
}

// Mappings are the uid and gid maps of ModeSubIDs for the caller (uid,
// gid): 0 → the caller, 1..N → its ranges in c's subuid and subgid
// files, looked up by user name and by number.
func Mappings(c Config, uid, gid int) (uids, gids []IDMap, err error) {
	c = c.withDefaults()
	name := strconv.Itoa(uid)
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
	}
	subu, err := subIDRanges(c.SubUIDFile, name, uid)
	if err != nil {
		return nil, nil, fmt.Errorf("rootless: %w", err)
	}
	subg, err := subIDRanges(c.SubGIDFile, name, uid)
	if err != nil {
		return nil, nil, fmt.Errorf("rootless: %w", err)
	}
	fix := fmt.Sprintf("add a range as root (usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s) or map only yourself with --userns=single", name)
	if len(subu) == 0 {
		return nil, nil, fmt.Errorf("rootless: %w: user %s has no range in %s: %s", ErrNoSubIDs, name, c.SubUIDFile, fix)
	}
	if len(subg) == 0 {
		return nil, nil, fmt.Errorf("rootless: %w: user %s has no range in %s: %s", ErrNoSubIDs, name, c.SubGIDFile, fix)
	}
	return mapping(uid, subu), mapping(gid, subg), nil
}

// ErrNoHelper is wrapped when newuidmap or newgidmap cannot be found.
var ErrNoHelper = errors.New("setuid id-map helper missing")

// helper finds newuidmap or newgidmap.
func helper(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("rootless: %w: %s not found (Debian: apt-get install uidmap), or map only yourself with --userns=single", ErrNoHelper, filepath.Base(name))
	}
	return p, nil
}

// writeMaps runs newuidmap and newgidmap for pid.
func writeMaps(c Config, pid int, uids, gids []IDMap) error {
	for _, h := range []struct {
		bin string
		m   []IDMap
	}{{c.Newuidmap, uids}, {c.Newgidmap, gids}} {
		out, err := exec.Command(h.bin, helperArgs(pid, h.m)...).CombinedOutput()
		if err != nil {
			msg := strings.TrimSpace(string(out))
			if msg == "" {
				msg = err.Error()
			}
			return fmt.Errorf("rootless: %s %s: %s (is it setuid root? Debian's uidmap installs it so)", filepath.Base(h.bin), strings.Join(helperArgs(pid, h.m)[1:], " "), msg)
		}
	}
	return nil
}

// ErrForbidden is wrapped when the kernel refuses the caller a user
// namespace.
var ErrForbidden = errors.New("the kernel refuses to create a user namespace")

// diagnose explains a failed clone(CLONE_NEWUSER) from the sysctls under
// procSys: which setting forbids it and how to allow it.
func diagnose(err error, procSys string) error {
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(procSys, name))
		return strings.TrimSpace(string(b))
	}
	errno := err
	var pe *os.PathError
	if errors.As(err, &pe) {
		errno = pe.Err
	}
	if !errors.Is(errno, unix.EPERM) && !errors.Is(errno, unix.ENOSPC) && !errors.Is(errno, unix.EUSERS) && !errors.Is(errno, unix.EINVAL) {
		return fmt.Errorf("rootless: starting in a new user namespace: %w", err)
	}
	var why string
	switch {
	case read("kernel/unprivileged_userns_clone") == "0":
		why = "sysctl kernel.unprivileged_userns_clone is 0 (as root: sysctl -w kernel.unprivileged_userns_clone=1)"
	case read("user/max_user_namespaces") == "0":
		why = "sysctl user.max_user_namespaces is 0 (as root: sysctl -w user.max_user_namespaces=15000)"
	case read("kernel/apparmor_restrict_unprivileged_userns") == "1":
		why = "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1: give layercommit an AppArmor profile with userns, or set it to 0)"
	case errors.Is(errno, unix.ENOSPC) || errors.Is(errno, unix.EUSERS):
		why = "the limit user.max_user_namespaces (" + read("user/max_user_namespaces") + ") or the nesting depth is reached (as root: raise user.max_user_namespaces)"
	default:
		why = "a seccomp filter or security module forbids unprivileged user namespaces (in a container: allow clone(CLONE_NEWUSER), e.g. docker run --security-opt seccomp=unconfined)"
	}
	return fmt.Errorf("rootless: %w (%v): %s", ErrForbidden, errno, why)
}

// Caller is the caller's own uid (in the namespace Reexec was called
// from) when this process runs inside the namespace Reexec made: the
// host id that uid 0 maps to. ok is false outside it.
func Caller() (uid int, ok bool) {
	if Inside() == "" {
		return 0, false
	}
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "0" {
			id, err := strconv.Atoi(f[1])
			return id, err == nil
		}
	}
	return 0, false
}

var inUserNS struct {
	once sync.Once
	yes  bool
}

// RunningInUserNS reports whether this process runs in a user
// namespace other than the initial one (its uid_map is not the identity
// of every id), whoever made it: there trusted.* xattrs and device nodes
// are out of reach, so overlays are mounted with userxattr and layers
// are unpacked without devices. The answer is read once per process.
func RunningInUserNS() bool {
	inUserNS.once.Do(func() {
		b, err := os.ReadFile("/proc/self/uid_map")
		if err != nil {
			return
		}
		f := strings.Fields(string(b))
		inUserNS.yes = !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
	})
	return inUserNS.yes
}
