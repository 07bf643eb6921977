package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// initEnv marks a re-executed copy of this binary (or test binary) as a
// sandbox's init: see Main.
const initEnv = "_LAYERCOMMIT_SANDBOX_INIT"

// The init's extra files: setup errors go back on fd 3, the spec comes
// in on fd 4 (not in the environment, which limits one string to 128 KiB
// and so an image's layer count).
const (
	statusFD = 3
	specFD   = 4
)

// Spec is one command to run and the root to run it in.
type Spec struct {
	// Lowers are the image's layer dirs in overlay form, top first;
	// InitLayer's dir comes first. Two at least (the kernel needs two
	// lowers without an upper; Run always has an upper, so one will do).
	Lowers []string
	// Upper and Work are the fresh upper and work dirs; Merged is the
	// (empty) mount point. All three must exist.
	Upper, Work, Merged string
	// Volatile mounts the root's overlay volatile (overlay.Options): its
	// unmount then does not sync the upper dir's file system, and the
	// caller must not trust the upper dir after a crash.
	Volatile bool `json:",omitempty"`
	// Ready says Merged is already the root, set up by the caller (a
	// fuse-overlayfs mount, or a copied tree diffed afterwards): the init
	// binds it on itself and mounts no overlay; Lowers, Upper and Work
	// are not used.
	Ready bool `json:",omitempty"`
	// Binds maps paths in the root ("etc/hosts") to host files bound
	// over them (EtcFiles makes them).
	Binds map[string]string
	// Hostname is the UTS name, also HOSTNAME in the environment.
	Hostname string
	// HostNet keeps the host's network namespace (as Network "host").
	HostNet bool
	// Network is NetworkDefault, NetworkNone (when empty) or
	// NetworkHost; see their docs. NetworkDefault needs slirp4netns.
	Network string `json:",omitempty"`
	// Insecure runs the command with every capability and no seccomp
	// filter (RUN --security=insecure); otherwise it gets Docker's
	// default capability set and a seccomp filter like Docker's default
	// profile (see security_linux.go).
	Insecure bool `json:",omitempty"`
	// Args is the command; Args[0] is looked up on the PATH of Env
	// inside the root.
	Args []string
	// Env is the command's environment; HOME and HOSTNAME are added when
	// missing.
	Env []string
	// User is USER ("name", "uid", "name:group", "uid:gid"; empty is
	// uid 0, gid 0), resolved in the root.
	User string
	// Workdir is the working dir in the root (made if missing; "/" when
	// empty).
	Workdir string
	// Pipes are files (name → content) made executable on a read-only
	// tmpfs at /dev/pipes, as BuildKit mounts a RUN heredoc script: they
	// are never in the upper dir.
	Pipes map[string]string `json:",omitempty"`
	// Mounts are RUN --mount's mounts, set up in order (see Mount). The
	// spec reaches the init through a pipe, never a file: a secret's Data
	// is on no disk.
	Mounts []Mount `json:",omitempty"`
	// Scratch is an empty host dir where the init mounts the overlays
	// and tmpfs that Mounts need before binding them (in its own mount
	// namespace only); required when Mounts has an overlay or a file.
	Scratch string `json:",omitempty"`
}

// Main makes the process a sandbox's init when Run started it: it then
// runs the command and exits with its status, never returning. In any
// other process it returns at once. Call it first thing in main, and in
// TestMain of every test binary that runs Run.
func Main() {
	mainCalled.Store(true)
	if os.Getenv(initEnv) == "" {
		return
	}
	os.Exit(initMain())
}

// mainCalled records that Main ran in this process. Run refuses to
// start without it: the re-executed binary would not become the init but
// run as itself (a test binary would run its tests again, and Run again).
var mainCalled atomic.Bool

// ErrNoMain is returned by Run when the program did not call Main.
var ErrNoMain = errors.New("sandbox: the program does not call sandbox.Main first in main (or TestMain)")

// Run runs spec's command in new mount, PID, UTS, IPC and (unless
// HostNet) network namespaces and returns its exit status (128+signal if
// killed). err is set when the sandbox could not be set up or ctx ended.
// The namespace's init is this binary re-executed (see Main); when the
// command exits the init exits, the kernel kills every other process of
// the PID namespace and waits for them, and the mount namespace (with the
// overlay) goes away: when Run returns, nothing runs on or holds the
// upper dir.
func Run(ctx context.Context, spec Spec, stdout, stderr io.Writer) (exit int, err error) {
	if !mainCalled.Load() {
		return 0, ErrNoMain
	}
	if len(spec.Args) == 0 {
		return 0, errors.New("sandbox: no command")
	}
	js, err := json.Marshal(spec)
	if err != nil {
		return 0, fmt.Errorf("encoding the sandbox spec: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("finding own binary: %w", err)
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer statusR.Close()
	specR, specW, err := os.Pipe()
	if err != nil {
		statusW.Close()
		return 0, err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Args[0] = "layercommit-sandbox"
	cmd.Env = []string{initEnv + "=1"}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.ExtraFiles = []*os.File{statusW, specR}
	network := spec.network()
	switch network {
	case NetworkDefault, NetworkNone, NetworkHost:
	default:
		return 0, fmt.Errorf("sandbox: unknown network %q", network)
	}
	if network == NetworkDefault && !SlirpAvailable() {
		return 0, ErrNoSlirp
	}
	if network == NetworkDefault {
		if err := tunAvailable(); err != nil {
			return 0, fmt.Errorf("sandbox: %w", err)
		}
	}
	flags := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC)
	if network != NetworkHost {
		flags |= unix.CLONE_NEWNET
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	statusW.Close()
	specR.Close()
	if err != nil {
		specW.Close()
		return 0, fmt.Errorf("starting sandbox: %w", err)
	}
	// The init reads the whole spec before anything else, so it waits
	// (in its new network namespace) until slirp4netns has set up tap0
	// there; if it died first, Wait tells.
	var werr error
	if network == NetworkDefault {
		sl, err := startSlirp(cmd.Process.Pid)
		if err != nil {
			specW.Close()
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return 0, fmt.Errorf("sandbox: %w", err)
		}
		defer sl.stop()
	}
	_, werr = specW.Write(js)
	if cerr := specW.Close(); werr == nil {
		werr = cerr
	}
	setupErr, _ := io.ReadAll(io.LimitReader(statusR, 64<<10))
	err = cmd.Wait()
	if len(setupErr) > 0 {
		return 0, fmt.Errorf("sandbox: %s", strings.TrimSpace(string(setupErr)))
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if werr != nil {
			return 0, fmt.Errorf("sending the sandbox its spec: %w", werr)
		}
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("running sandbox: %w", err)
	}
	return 0, nil
}

// initMain is PID 1 of the sandbox. It reports setup errors on fd 3
// and returns the command's exit status (128+signal if killed).
func initMain() int {
	status := os.NewFile(statusFD, "status")
	syscall.CloseOnExec(statusFD)
	fail := func(err error) int {
		fmt.Fprintf(status, "%s\n", err)
		return 125
	}
	specFile := os.NewFile(specFD, "spec")
	js, err := io.ReadAll(io.LimitReader(specFile, 16<<20))
	specFile.Close()
	if err != nil {
		return fail(fmt.Errorf("reading spec: %w", err))
	}
	var spec Spec
	if err := json.Unmarshal(js, &spec); err != nil {
		return fail(fmt.Errorf("reading spec: %w", err))
	}
	if len(spec.Args) == 0 {
		return fail(errors.New("reading spec: no command"))
	}
	stubs, targets, err := setupRoot(&spec)
	if err != nil {
		return fail(err)
	}
	id, err := resolveUser(spec.User)
	if err != nil {
		return fail(err)
	}
	env := spec.Env
	if !hasEnv(env, "HOME") {
		env = append(env, "HOME="+id.Home)
	}
	if !hasEnv(env, "HOSTNAME") {
		env = append([]string{"HOSTNAME=" + spec.Hostname}, env...)
	}
	wd := spec.Workdir
	if wd == "" {
		wd = "/"
	}
	if err := os.MkdirAll(wd, 0o755); err != nil {
		return fail(fmt.Errorf("creating working dir %s: %w", wd, err))
	}
	if err := os.Chdir(wd); err != nil {
		return fail(fmt.Errorf("changing to working dir %s: %w", wd, err))
	}
	// The cwd must be inside the new root (runc CVE-2024-21626): getcwd
	// fails or reports an unreachable path otherwise.
	if cwd, err := os.Getwd(); err != nil || !strings.HasPrefix(cwd, "/") {
		return fail(fmt.Errorf("working dir %s is outside the container root", wd))
	}
	argv0, err := lookPath(spec.Args[0], env)
	if err != nil {
		return fail(err)
	}
	null, err := os.Open("/dev/null")
	if err != nil {
		return fail(err)
	}
	p, err := startConfined(spec.Insecure, argv0, spec.Args, &os.ProcAttr{
		Env:   env,
		Files: []*os.File{null, os.Stdout, os.Stderr},
		Sys: &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: id.UID, Gid: id.GID, Groups: id.Groups, NoSetGroups: setgroupsDenied()},
			Setsid:     true,
		},
	})
	if err != nil {
		return fail(fmt.Errorf("starting %s: %w", spec.Args[0], err))
	}
	null.Close()
	status.Close()
	// Reap every child (orphans are reparented to us) until the command
	// itself exits; returning then ends the PID namespace.
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 125
		}
		if pid != p.Pid {
			continue
		}
		code := ws.ExitStatus()
		if ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		if len(targets) > 0 {
			// Nothing may write under a mount point while its stub is
			// judged: end the namespace's other processes first.
			_ = unix.Kill(-1, unix.SIGKILL)
			for {
				if _, err := unix.Wait4(-1, nil, 0, nil); err != nil && err != unix.EINTR {
					break
				}
			}
			removeStubs(stubs, targets)
		}
		return code
	}
}

func hasEnv(env []string, k string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, k+"=") {
			return true
		}
	}
	return false
}

// lookPath finds a command on the PATH of env, inside the new root.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	p := ""
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			p = v
		}
	}
	for _, dir := range filepath.SplitList(p) {
		if dir == "" {
			dir = "."
		}
		f := path.Join(dir, name)
		if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return f, nil
		}
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", name)
}
