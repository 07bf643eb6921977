package flock

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Two open file descriptions in one process conflict as two processes do.
func TestModes(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name        string
		held, want  Mode
		conflicting bool
	}{
		{"shared after shared", Shared, Shared, false},
		{"exclusive after shared", Shared, Exclusive, true},
		{"shared after exclusive", Exclusive, Shared, true},
		{"exclusive after exclusive", Exclusive, Exclusive, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := Acquire(dir, tc.held, 0, "dir")
			if err != nil {
				t.Fatal(err)
			}
			defer a.Unlock()
			start := time.Now()
			b, err := Acquire(dir, tc.want, 50*time.Millisecond, "dir")
			if tc.conflicting {
				if !errors.Is(err, ErrLocked) {
					t.Fatalf("second lock: %v, want ErrLocked", err)
				}
				if time.Since(start) < 50*time.Millisecond {
					t.Fatalf("gave up before the wait ran out")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b.Unlock()
		})
	}
}

func TestUnlockFreesAndTry(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := Acquire(p, Shared, 0, "f")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := Try(p); ok {
		t.Fatal("Try got a held file")
	}
	a.Unlock()
	a.Unlock() // twice is safe
	l, ok := Try(p)
	if !ok || l == nil {
		t.Fatal("Try failed on a free file")
	}
	l.Unlock()
	if l, ok := Try(p + "-missing"); !ok || l != nil {
		t.Fatalf("Try of a missing file: %v %v", l, ok)
	}
}

// TestOtherProcess checks the lock against a real second process.
func TestOtherProcess(t *testing.T) {
	flockBin, err := exec.LookPath("flock")
	if err != nil {
		t.Fatal("no flock(1): util-linux is essential on Debian")
	}
	dir := t.TempDir()
	// One process holds the lock (sh execs into sleep keeping fd 9).
	cmd := exec.Command("sh", "-c", `exec 9<"$1"; "$2" -x 9; exec sleep 30`, "sh", dir, flockBin)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := Acquire(dir, Shared, 0, "dir")
		if err != nil {
			break // the child holds it
		}
		l.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("child never took the lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if up := (&Lock{}); up.TryUpgrade() {
		t.Fatal("upgrade of an unlocked lock")
	}
	cmd.Process.Kill()
	cmd.Wait()
	l, err := Acquire(dir, Exclusive, 30*time.Second, "dir")
	if err != nil {
		t.Fatalf("after the holder died: %v", err)
	}
	l.Unlock()
}
