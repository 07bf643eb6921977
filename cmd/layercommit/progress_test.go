package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/internal/oracle"
	"github.com/layercommit/layercommit/layer"
)

// openPTY returns both ends of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		oracle.Missing(t, "no pty: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

func TestProgressOnlyOnTerminal(t *testing.T) {
	c := &layer.Counters{}
	c.Files.Store(3)
	c.TarBytes.Store(5 << 20)

	var buf bytes.Buffer
	stop := showProgress(&buf, c, false)
	time.Sleep(300 * time.Millisecond)
	stop()
	if buf.Len() != 0 {
		t.Fatalf("progress written to a non-terminal: %q", buf.String())
	}

	master, slave := openPTY(t)
	stop = showProgress(slave, c, true)
	time.Sleep(300 * time.Millisecond)
	stop()
	if got := readReady(t, master, 100); got != "" {
		t.Fatalf("-q still drew progress on the terminal: %q", got)
	}
	stop = showProgress(slave, c, false) // draws at once: no timing involved
	stop()
	if got := readReady(t, master, 2000); !strings.Contains(got, "3 files, 5.0 MiB scanned, ") || !strings.Contains(got, "/s, 0 B compressed") {
		t.Fatalf("terminal shows %q", got)
	}
	// A push shows its bytes done of the total, rate and ETA.
	c.UploadSize.Store(4 << 20)
	c.Uploaded.Store(1 << 20)
	stop = showProgress(slave, c, false)
	stop()
	if got := readReady(t, master, 2000); !strings.Contains(got, "pushing 1.0 MiB / 4.0 MiB  ") || !strings.Contains(got, "/s  ETA ") {
		t.Fatalf("terminal shows %q during a push", got)
	}
}

// readReady reads what the pty master has within ms milliseconds, without
// ever blocking longer (a pty fd takes no read deadline).
func readReady(t *testing.T, f *os.File, ms int) string {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(f.Fd()), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, ms)
	if err != nil || n == 0 || fds[0].Revents&unix.POLLIN == 0 {
		return ""
	}
	b := make([]byte, 4096)
	m, _ := unix.Read(int(f.Fd()), b)
	if m < 0 {
		m = 0
	}
	return string(b[:m])
}
