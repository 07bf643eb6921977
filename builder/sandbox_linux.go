package builder

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
	"syscall"

	"golang.org/x/sys/unix"
)

// sandboxEnv names the variable that turns a re-executed copy of this
// binary (or test binary) into the sandbox's init: see init below.
const sandboxEnv = "_LAYERCOMMIT_SANDBOX_SPEC"

// sandboxSpec is what the parent tells the sandbox init, as JSON in
// sandboxEnv.
type sandboxSpec struct {
	Lowers   []string // top first; the first is the init layer
	Upper    string
	Work     string
	Merged   string
	Binds    map[string]string // path in the root -> host file
	Hostname string
	HostNet  bool
	Args     []string
	Env      []string
	User     string
	Workdir  string
}

// overlayOptions are the mount options of every overlay we mount: the
// upper dir must hold plain copies, whiteouts and opaque markers only.
const overlayOptions = "index=off,redirect_dir=off,metacopy=off"

func init() {
	spec := os.Getenv(sandboxEnv)
	if spec == "" {
		return
	}
	os.Exit(sandboxInit(spec))
}

// runSandbox runs spec's command in new mount, PID, UTS, IPC and (unless
// HostNet) network namespaces and returns its exit status. The namespace's
// init is this binary re-executed; when the command exits the init exits,
// the kernel kills every other process of the PID namespace and waits for
// them, and the mount namespace (with the overlay) goes away: when
// runSandbox returns, nothing runs on or holds the upper dir.
func runSandbox(ctx context.Context, spec sandboxSpec, stdout, stderr io.Writer) (int, error) {
	js, err := json.Marshal(spec)
	if err != nil {
		return 0, err
	}
	self, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("finding own binary: %w", err)
	}
	// Setup errors come back on fd 3; the command's output on 1 and 2.
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer pr.Close()
	cmd := exec.CommandContext(ctx, self)
	cmd.Args[0] = "layercommit-sandbox"
	cmd.Env = []string{sandboxEnv + "=" + string(js)}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.ExtraFiles = []*os.File{pw}
	flags := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC)
	if !spec.HostNet {
		flags |= unix.CLONE_NEWNET
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		pw.Close()
		return 0, fmt.Errorf("starting sandbox: %w", err)
	}
	pw.Close()
	setupErr, _ := io.ReadAll(io.LimitReader(pr, 64<<10))
	err = cmd.Wait()
	if len(setupErr) > 0 {
		return 0, fmt.Errorf("sandbox: %s", strings.TrimSpace(string(setupErr)))
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("running sandbox: %w", err)
	}
	return 0, nil
}

// sandboxInit is PID 1 of the sandbox. It reports setup errors on fd 3
// and returns the command's exit status (128+signal if killed).
func sandboxInit(js string) int {
	status := os.NewFile(3, "status")
	syscall.CloseOnExec(3)
	fail := func(err error) int {
		fmt.Fprintf(status, "%v\n", err)
		return 125
	}
	var spec sandboxSpec
	if err := json.Unmarshal([]byte(js), &spec); err != nil {
		return fail(fmt.Errorf("reading spec: %w", err))
	}
	if err := setupRoot(&spec); err != nil {
		return fail(err)
	}
	id, err := resolveUser(os.DirFS("/"), spec.User)
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
	p, err := os.StartProcess(argv0, spec.Args, &os.ProcAttr{
		Env:   env,
		Files: []*os.File{null, os.Stdout, os.Stderr},
		Sys: &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: id.UID, Gid: id.GID, Groups: id.Groups},
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
		if ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ws.ExitStatus()
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

// setupRoot mounts the overlay and the special file systems, then pivots
// into the merged dir.
func setupRoot(s *sandboxSpec) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	if err := mountOverlay(s.Lowers, s.Upper, s.Work, s.Merged); err != nil {
		return err
	}
	m := s.Merged
	for dst, src := range s.Binds {
		if err := unix.Mount(src, filepath.Join(m, dst), "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("binding %s: %w", dst, err)
		}
	}
	const nsd = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if err := unix.Mount("proc", filepath.Join(m, "proc"), "proc", nsd, ""); err != nil {
		return fmt.Errorf("mounting /proc: %w", err)
	}
	// sysfs read-only; not fatal (it needs a network namespace we own).
	_ = unix.Mount("sysfs", filepath.Join(m, "sys"), "sysfs", nsd|unix.MS_RDONLY, "")
	if err := setupDev(filepath.Join(m, "dev")); err != nil {
		return err
	}
	if err := unix.Chdir(m); err != nil {
		return err
	}
	// pivot_root(".", ".") stacks the old root under the new one; the
	// detach then drops it, with no put_old directory in the layer.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
		return fmt.Errorf("sethostname: %w", err)
	}
	if !s.HostNet {
		if err := loopbackUp(); err != nil {
			return fmt.Errorf("bringing up lo: %w", err)
		}
	}
	return nil
}

// mountOverlay mounts lowers (top first) and upper at merged.
func mountOverlay(lowers []string, upper, work, merged string) error {
	opts := "lowerdir=" + strings.Join(lowers, ":")
	if upper != "" {
		opts += ",upperdir=" + upper + ",workdir=" + work
	}
	err := unix.Mount("overlay", merged, "overlay", 0, opts+","+overlayOptions)
	if err == unix.EINVAL {
		err = unix.Mount("overlay", merged, "overlay", 0, opts)
	}
	if err != nil {
		return fmt.Errorf("mounting overlay at %s: %w", merged, err)
	}
	return nil
}

// setupDev mounts a tmpfs with the minimal device set docker gives.
func setupDev(dev string) error {
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_STRICTATIME, "mode=755,size=65536k"); err != nil {
		return fmt.Errorf("mounting /dev: %w", err)
	}
	for _, d := range []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}} {
		p := filepath.Join(dev, d.name)
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
			return fmt.Errorf("creating /dev/%s: %w", d.name, err)
		}
		if err := unix.Chmod(p, 0o666); err != nil {
			return err
		}
	}
	for _, d := range []string{"pts", "shm", "mqueue"} {
		if err := os.Mkdir(filepath.Join(dev, d), 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("devpts", filepath.Join(dev, "pts"), "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err != nil {
		return fmt.Errorf("mounting /dev/pts: %w", err)
	}
	if err := unix.Mount("shm", filepath.Join(dev, "shm"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k"); err != nil {
		return fmt.Errorf("mounting /dev/shm: %w", err)
	}
	_ = unix.Mount("mqueue", filepath.Join(dev, "mqueue"), "mqueue", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	for name, target := range map[string]string{"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2", "core": "/proc/kcore"} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	return nil
}

// loopbackUp sets IFF_UP on lo in the new network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// initLayer makes docker's init layer in dir: the mount points and stub
// files a container needs, as the topmost lower, so that bind mounts and
// special file systems never create anything in the upper dir.
func initLayer(dir string) error {
	for _, d := range []string{"dev/pts", "dev/shm", "proc", "sys", "etc"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	for _, f := range []string{".dockerenv", "etc/resolv.conf", "etc/hosts", "etc/hostname", "dev/console"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o755); err != nil {
			return err
		}
	}
	if err := os.Symlink("/proc/mounts", filepath.Join(dir, "etc/mtab")); err != nil && !os.IsExist(err) {
		return err
	}
	return nil
}

// etcFiles writes the files bound over /etc/hosts, /etc/hostname and
// /etc/resolv.conf for one step into dir.
func etcFiles(dir, hostname string, hostNet bool) (map[string]string, error) {
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
	resolv := []byte{}
	if hostNet {
		if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
			resolv = b
		}
		if b, err := os.ReadFile("/etc/hosts"); err == nil {
			hosts = string(b)
		}
	} else {
		hosts += "127.0.0.1\t" + hostname + "\n"
	}
	files := map[string][]byte{"hosts": []byte(hosts), "hostname": []byte(hostname + "\n"), "resolv.conf": resolv}
	binds := map[string]string{}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return nil, err
		}
		binds["etc/"+name] = p
	}
	return binds, nil
}
