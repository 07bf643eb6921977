package sandbox

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// defaultCaps is Docker's (and containerd's, so BuildKit's) default
// capability set: a RUN's bounding set, and its permitted and effective
// sets when it runs as root.
var defaultCaps = []int{
	unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FSETID, unix.CAP_FOWNER, unix.CAP_MKNOD,
	unix.CAP_NET_RAW, unix.CAP_SETGID, unix.CAP_SETUID, unix.CAP_SETFCAP, unix.CAP_SETPCAP,
	unix.CAP_NET_BIND_SERVICE, unix.CAP_SYS_CHROOT, unix.CAP_KILL, unix.CAP_AUDIT_WRITE,
}

// startConfined starts the command confined as Docker confines a
// container by default, unless insecure: its bounding set is
// defaultCaps (so root's exec gets exactly those; another user gets
// none), its inheritable and ambient sets are empty, and it runs under
// seccompFilter. The bounding set and the filter are per thread: they
// are set on a locked thread that forks the command and then dies (a
// goroutine that exits locked ends its thread), so the init keeps its
// own capabilities and system calls for the cleanup after the command.
// no_new_privs stays off, as in Docker: set-user-ID programs work.
func startConfined(insecure bool, argv0 string, argv []string, attr *os.ProcAttr) (*os.Process, error) {
	if insecure {
		return os.StartProcess(argv0, argv, attr)
	}
	type result struct {
		p   *os.Process
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked: the thread goes away with the goroutine.
		if err := confineThread(); err != nil {
			ch <- result{err: err}
			return
		}
		p, err := os.StartProcess(argv0, argv, attr)
		ch <- result{p, err}
	}()
	r := <-ch
	return r.p, r.err
}

// confineThread drops the calling thread's capabilities outside
// defaultCaps from its bounding set, clears its inheritable and ambient
// sets and installs the seccomp filter.
func confineThread() error {
	keep := map[int]bool{}
	for _, c := range defaultCaps {
		keep[c] = true
	}
	last, err := lastCap()
	if err != nil {
		return err
	}
	for c := 0; c <= last; c++ {
		if keep[c] {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("dropping capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clearing ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("reading capabilities: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clearing inheritable capabilities: %w", err)
	}
	prog := seccompFilter()
	if len(prog) == 0 {
		return nil // no table for this architecture
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	// Without no_new_privs the kernel needs CAP_SYS_ADMIN here, which
	// the init has.
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)), 0, 0); err != nil {
		return fmt.Errorf("installing the seccomp filter: %w", err)
	}
	runtime.KeepAlive(prog)
	return nil
}

func lastCap() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("reading the last capability: %w", err)
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// seccompArch is one architecture's part of the filter: the system
// calls Docker's default profile refuses to a container with the
// default capabilities (EPERM), and clone/clone3 numbers for the
// namespace rule.
type seccompArch struct {
	audit  uint32 // AUDIT_ARCH_*
	deny   []uint32
	clone  uint32 // clone: refused with a CLONE_NEW* flag
	clone3 uint32 // clone3: ENOSYS (its flags are behind a pointer), so libc falls back to clone
	// nrMask, when set, refuses numbers with these bits (x32 on amd64).
	nrMask uint32
}

// Offsets in struct seccomp_data.
const (
	seccompNrOff   = 0
	seccompArchOff = 4
	seccompArg0Off = 16 // low half on little-endian machines
)

// cloneNewFlags are clone's namespace flags (0x7E020000), refused as
// Docker refuses them without CAP_SYS_ADMIN. CLONE_NEWTIME is not among
// them: for clone it is part of the exit signal byte.
const cloneNewFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET

// seccompFilter assembles the classic BPF program: for each known
// architecture, its deny list and clone rules, else allow; a system
// call of an architecture with no table gets EPERM. It is our own
// (about 40 lines) rather than libseccomp-golang, which needs cgo and
// libseccomp; the deny lists follow Docker's default profile
// (moby/profiles/seccomp/default.json) for the default capabilities:
// an allow list there, a deny list here, so system calls newer than
// the table are allowed.
func seccompFilter() []unix.SockFilter {
	arches := seccompArches()
	if len(arches) == 0 {
		return nil
	}
	var p []unix.SockFilter
	stmt := func(code uint16, k uint32) { p = append(p, unix.SockFilter{Code: code, K: k}) }
	const (
		ld     = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		ret    = unix.BPF_RET | unix.BPF_K
		jeqK   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jsetK  = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		allow  = unix.SECCOMP_RET_ALLOW
		eperm  = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
		enosys = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	)
	for _, a := range arches {
		stmt(ld, seccompArchOff)
		// Skip this arch's block when the arch differs: jf patched below.
		skip := len(p)
		p = append(p, unix.SockFilter{Code: jeqK, K: a.audit})
		stmt(ld, seccompNrOff)
		if a.nrMask != 0 {
			p = append(p, unix.SockFilter{Code: jsetK, K: a.nrMask, Jt: 0, Jf: 1})
			stmt(ret, eperm)
		}
		for _, nr := range a.deny {
			p = append(p, unix.SockFilter{Code: jeqK, K: nr, Jt: 0, Jf: 1})
			stmt(ret, eperm)
		}
		p = append(p, unix.SockFilter{Code: jeqK, K: a.clone3, Jt: 0, Jf: 1})
		stmt(ret, enosys)
		p = append(p, unix.SockFilter{Code: jeqK, K: a.clone, Jt: 0, Jf: 3})
		stmt(ld, seccompArg0Off)
		p = append(p, unix.SockFilter{Code: jsetK, K: cloneNewFlags, Jt: 0, Jf: 1})
		stmt(ret, eperm)
		stmt(ret, allow)
		p[skip].Jf = uint8(len(p) - skip - 1)
		if len(p)-skip-1 > 255 {
			panic("sandbox: seccomp table too long for one jump")
		}
	}
	stmt(ret, eperm)
	return p
}
