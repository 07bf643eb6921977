package main

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestGCStateDirLockedByBuild: a build holds a shared flock on its state
// dir; gc refuses with one line while it is held and cleans once it is
// released.
func TestGCStateDirLockedByBuild(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"blobs/sha256", "tmp/step-1"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := cli("gc", "--state-dir", dir)
	if code == 0 {
		t.Fatal("gc cleaned a state dir a build holds")
	}
	assertOneLineError(t, stderr, "is using")
	if _, err := os.Stat(filepath.Join(dir, "tmp", "step-1")); err != nil {
		t.Fatalf("gc removed a held build's scratch dir: %v", err)
	}
	f.Close()
	if got := gcOut(t, "--state-dir", dir); len(got) != 1 || got[0] != filepath.Join(dir, "tmp", "step-1") {
		t.Fatalf("gc after the build: %q", got)
	}
}
