package dockerroot

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestFreezeGonePid: a container whose init is gone (it stopped after its
// state was read) has nothing to freeze; Freeze neither fails nor
// touches any cgroup. A pid above pid_max can never exist.
func TestFreezeGonePid(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Skip("no /proc/sys/kernel/pid_max")
	}
	max, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	thaw, err := Freeze(max+1, "0123456789abcdef")
	if err != nil {
		t.Fatalf("Freeze of a gone pid: %v", err)
	}
	if err := thaw(); err != nil {
		t.Fatalf("thaw: %v", err)
	}
}

// TestFreezeForeignCgroup: a pid whose cgroup does not name the
// container (a stale state file's pid, reused by another process) is
// never frozen: here this test's own process, which must keep running.
func TestFreezeForeignCgroup(t *testing.T) {
	thaw, err := Freeze(os.Getpid(), "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	if err != nil {
		t.Fatalf("Freeze of a foreign pid: %v", err)
	}
	if err := thaw(); err != nil {
		t.Fatalf("thaw: %v", err)
	}
}
