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
// never changed), each of whose connections gets one to the agent, with
// requests passed through agentReply, as BuildKit serves the client's
// agent read-only. Close stops it and waits for its connections.
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
	for {
		req, err := readAgentMsg(c)
		if err != nil {
			return
		}
		reply, err := agentReply(req, a)
		if err != nil {
			return
		}
		if _, err := c.Write(reply); err != nil {
			return
		}
	}
}

// maxAgentMsg caps a request, as x/crypto's agent server (BuildKit's)
// caps it; replies may be larger (a list of many keys).
const maxAgentMsg = 16 << 10

// SSH agent protocol message types (draft-miller-ssh-agent).
const (
	agentFailure         = 5
	agentSuccess         = 6
	agentV1Identities    = 1
	agentV1IdentitiesAns = 2
	agentV1RemoveAll     = 9
	agentRequestIdents   = 11
	agentSignRequest     = 13
	agentUnlock          = 23
	maxAgentReply        = 1 << 20
	agentMsgHeaderLength = 4
)

// agentReply answers one request as BuildKit's read-only agent does
// (sshforward/sshprovider readOnlyAgent served by x/crypto's
// ServeAgent): listing keys, signing and unlocking go to the agent;
// adding, removing, locking and extensions fail; the old v1 requests are
// answered empty; anything else fails. The agent's keys can be used but
// never changed from a RUN.
func agentReply(req []byte, a net.Conn) ([]byte, error) {
	msg := func(b ...byte) []byte {
		return append([]byte{0, 0, 0, byte(len(b))}, b...)
	}
	if len(req) == 0 {
		return msg(agentFailure), nil
	}
	switch req[0] {
	case agentRequestIdents, agentSignRequest, agentUnlock:
		frame := make([]byte, agentMsgHeaderLength+len(req))
		putUint32(frame, uint32(len(req)))
		copy(frame[agentMsgHeaderLength:], req)
		if _, err := a.Write(frame); err != nil {
			return nil, err
		}
		rep, err := readAgentMsgMax(a, maxAgentReply)
		if err != nil {
			return nil, err
		}
		out := make([]byte, agentMsgHeaderLength+len(rep))
		putUint32(out, uint32(len(rep)))
		copy(out[agentMsgHeaderLength:], rep)
		return out, nil
	case agentV1Identities:
		return msg(agentV1IdentitiesAns, 0, 0, 0, 0), nil
	case agentV1RemoveAll:
		return msg(agentSuccess), nil
	default:
		return msg(agentFailure), nil
	}
}

func readAgentMsg(r io.Reader) ([]byte, error) { return readAgentMsgMax(r, maxAgentMsg) }

func readAgentMsgMax(r io.Reader, max uint32) ([]byte, error) {
	var hdr [agentMsgHeaderLength]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := uint32(hdr[0])<<24 | uint32(hdr[1])<<16 | uint32(hdr[2])<<8 | uint32(hdr[3])
	if n > max {
		return nil, fmt.Errorf("ssh agent message of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

func putUint32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
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
