// Command sshls sends the ssh agent at $SSH_AUTH_SOCK (or the socket named
// by its first argument, "-" for the variable) one request of the type
// given as its second argument (default 11, a request for identities;
// no body) and prints the reply's bytes in hex: a static client for RUN
// --mount=type=ssh tests, whose bases have no unix-socket client. Only
// os, strconv and syscall, so it builds fast and static.
package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

func main() {
	sock := os.Getenv("SSH_AUTH_SOCK")
	if len(os.Args) > 1 && os.Args[1] != "-" {
		sock = os.Args[1]
	}
	typ := byte(11)
	if len(os.Args) > 2 {
		n, err := strconv.ParseUint(os.Args[2], 10, 8)
		if err != nil {
			fail(err)
		}
		typ = byte(n)
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		fail(err)
	}
	if err := syscall.Connect(fd, &syscall.SockaddrUnix{Name: sock}); err != nil {
		fail(err)
	}
	if _, err := syscall.Write(fd, []byte{0, 0, 0, 1, typ}); err != nil {
		fail(err)
	}
	var reply []byte
	buf := make([]byte, 256)
	for len(reply) < 4 || len(reply) < 4+(int(reply[0])<<24|int(reply[1])<<16|int(reply[2])<<8|int(reply[3])) {
		n, err := syscall.Read(fd, buf)
		if err != nil || n == 0 {
			fail(fmt.Errorf("short reply %x: %v", reply, err))
		}
		reply = append(reply, buf[:n]...)
	}
	fmt.Printf("%x\n", reply)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "sshls:", err)
	os.Exit(1)
}
