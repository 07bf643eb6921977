package builder

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// ParseSSH reads one --ssh value as buildctl and docker buildx spell it:
// ID (its socket is $SSH_AUTH_SOCK) or ID=SOCKET. Only agent sockets are
// taken (not key files). getenv is the caller's environment.
func ParseSSH(spec string, getenv func(string) (string, bool)) (id, socket string, err error) {
	id, socket, ok := strings.Cut(spec, "=")
	if id == "" {
		return "", "", fmt.Errorf("bad --ssh %q: want ID or ID=SOCKET", spec)
	}
	if !ok {
		v, set := getenv("SSH_AUTH_SOCK")
		if !set || v == "" {
			return "", "", fmt.Errorf("bad --ssh %q: SSH_AUTH_SOCK is not set", spec)
		}
		socket = v
	}
	if strings.Contains(socket, ",") {
		return "", "", fmt.Errorf("bad --ssh %q: one agent socket per id (key files are not supported)", spec)
	}
	fi, err := os.Stat(socket)
	if err != nil {
		return "", "", fmt.Errorf("ssh %s: %w", id, err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return "", "", fmt.Errorf("ssh %s: %s is not a socket (key files are not supported)", id, socket)
	}
	return id, socket, nil
}

// sshProxy is the socket a RUN --mount=type=ssh sees: a fresh unix
// socket with the mount's mode and owner (the user's agent socket is
// never changed), whose connections are forwarded byte for byte to the
// agent, as BuildKit forwards them to the client's agent. Close stops
// it and waits for its connections.
type sshProxy struct {
	path string
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	conn map[net.Conn]struct{}
}

func newSSHProxy(dir, agent string, mode os.FileMode, uid, gid int) (*sshProxy, error) {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("making ssh socket dir: %w", err)
	}
	p := &sshProxy{path: filepath.Join(dir, "agent.sock"), conn: map[net.Conn]struct{}{}}
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		return nil, fmt.Errorf("making ssh socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	p.ln = ln
	if err := os.Chown(p.path, uid, gid); err != nil {
		ln.Close()
		return nil, fmt.Errorf("making ssh socket: %w", err)
	}
	if err := os.Chmod(p.path, mode&os.ModePerm); err != nil {
		ln.Close()
		return nil, fmt.Errorf("making ssh socket: %w", err)
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go p.forward(c, agent)
		}
	}()
	return p, nil
}

func (p *sshProxy) forward(c net.Conn, agent string) {
	defer p.wg.Done()
	defer c.Close()
	a, err := net.Dial("unix", agent)
	if err != nil {
		return
	}
	defer a.Close()
	p.mu.Lock()
	if p.conn == nil {
		p.mu.Unlock()
		return
	}
	p.conn[c], p.conn[a] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(a, c)
	go pipe(c, a)
	<-done
	<-done
}

// Close stops accepting, closes open connections and waits for them.
func (p *sshProxy) Close() error {
	err := p.ln.Close()
	p.mu.Lock()
	for c := range p.conn {
		c.Close()
	}
	p.conn = nil
	p.mu.Unlock()
	p.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
