package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// Network modes of Spec.Network, as RUN --network spells them.
const (
	// NetworkDefault is a private network namespace with outbound NAT
	// through slirp4netns (as docker build's bridge gives outbound
	// access): 10.0.2.100/24 on tap0, gateway 10.0.2.2, DNS forwarded by
	// slirp from 10.0.2.3 to the host's resolv.conf servers. The host's
	// loopback services are not reachable (--disable-host-loopback).
	NetworkDefault = "default"
	// NetworkNone is a private network namespace with only lo.
	NetworkNone = "none"
	// NetworkHost is the host's network namespace.
	NetworkHost = "host"
)

// slirpDNS is the address slirp4netns answers DNS on.
const slirpDNS = "10.0.2.3"

// ErrNoSlirp is returned by Run when the default network is asked for
// and slirp4netns is not on the PATH.
var ErrNoSlirp = errors.New("the default RUN network needs slirp4netns on the PATH (Debian: apt-get install slirp4netns), or use --network none")

// SlirpAvailable reports whether the default network can be set up.
func SlirpAvailable() bool {
	_, err := exec.LookPath("slirp4netns")
	return err == nil
}

// network is the mode a spec runs with ("" is none, as before modes).
func (s *Spec) network() string {
	if s.HostNet {
		return NetworkHost
	}
	if s.Network == "" {
		return NetworkNone
	}
	return s.Network
}

// slirp is a running slirp4netns serving one sandbox's namespace.
type slirp struct {
	cmd  *exec.Cmd
	exit *os.File // closing it makes slirp4netns exit
}

// startSlirp starts slirp4netns for the network namespace of pid and
// waits until it has configured tap0 there (its ready fd). stderr gets
// its messages only if it fails.
func startSlirp(pid int) (*slirp, error) {
	bin, err := exec.LookPath("slirp4netns")
	if err != nil {
		return nil, ErrNoSlirp
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer readyR.Close()
	exitR, exitW, err := os.Pipe()
	if err != nil {
		readyW.Close()
		return nil, err
	}
	var msgs strings.Builder
	// fds 3 and 4 in the child: ExtraFiles[0] and [1].
	cmd := exec.Command(bin, "--configure", "--mtu=65520", "--disable-host-loopback",
		"--enable-sandbox", "--ready-fd=3", "--exit-fd=4", strconv.Itoa(pid), "tap0")
	cmd.ExtraFiles = []*os.File{readyW, exitR}
	cmd.Stdout, cmd.Stderr = &msgs, &msgs
	// slirp4netns's --enable-sandbox (1.2.0, Debian's) unshares a mount
	// namespace, makes only "/" private (not recursively), pivots into a
	// tmpfs and detaches the old root: every shared mount below "/"
	// (dockerd's overlay rootfs of running containers, say) is unmounted
	// on the host too, through propagation. So it starts in a mount
	// namespace of its own, which Go makes recursively private
	// (syscall.forkAndExecInChild with CLONE_NEWNS), and nothing it
	// unmounts reaches the host.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	err = cmd.Start()
	readyW.Close()
	exitR.Close()
	if err != nil {
		exitW.Close()
		return nil, fmt.Errorf("starting slirp4netns: %w", err)
	}
	s := &slirp{cmd: cmd, exit: exitW}
	// slirp4netns writes "1" when tap0 is up; EOF means it died.
	b := make([]byte, 1)
	if _, err := io.ReadFull(readyR, b); err != nil {
		s.stop()
		return nil, fmt.Errorf("slirp4netns did not set up the network: %s", strings.TrimSpace(msgs.String()))
	}
	return s, nil
}

// stop ends slirp4netns and waits for it.
func (s *slirp) stop() {
	s.exit.Close()
	_ = s.cmd.Wait()
}

// slirpResolvConf is the host's resolv.conf with its nameservers
// replaced by slirp4netns's forwarder (which sends queries to them).
func slirpResolvConf() string {
	out := "nameserver " + slirpDNS + "\n"
	b, _ := os.ReadFile("/etc/resolv.conf")
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && (f[0] == "search" || f[0] == "options" || f[0] == "domain") {
			out += l + "\n"
		}
	}
	return out
}
