package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/internal/overlay"
)

// demoUpper builds a lower tree in dir, mounts an overlay over it, makes
// a few changes of every kind through the mount (modify, delete, delete
// and recreate a directory, add files, links and a fifo) and unmounts it.
// It returns the upper dir, which then holds real kernel whiteouts and
// opaque xattrs. (It is the CLI's own code, not the test fixtures': no
// non-test package imports fixtures.)
func demoUpper(dir string) (string, error) {
	lower, upper, work, merged := filepath.Join(dir, "lower"), filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	steps := []func() error{
		mkdir(lower, 0o755),
		mkdir(filepath.Join(lower, "etc"), 0o755),
		writeFile(filepath.Join(lower, "etc/motd"), "welcome\n", 0o644),
		writeFile(filepath.Join(lower, "etc/hosts"), "127.0.0.1 localhost\n", 0o644),
		mkdir(filepath.Join(lower, "app/cache"), 0o755),
		writeFile(filepath.Join(lower, "app/cache/a"), "a", 0o644),
		writeFile(filepath.Join(lower, "app/cache/b"), "b", 0o644),
		writeFile(filepath.Join(lower, "app/config"), "v1\n", 0o644),
		mkdir(upper, 0o755),
		mkdir(work, 0o755),
		mkdir(merged, 0o755),
	}
	if err := runSteps(steps); err != nil {
		return "", err
	}
	if err := overlay.Mount(merged, overlay.Options{Lowers: []string{lower}, Upper: upper, Work: work}); err != nil {
		return "", err
	}
	m := func(name string) string { return filepath.Join(merged, name) }
	t := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	err := runSteps([]func() error{
		writeFile(m("app/config"), "v2\n", 0o644),
		func() error { return os.Remove(m("etc/motd")) },
		func() error { return os.RemoveAll(m("app/cache")) },
		mkdir(m("app/cache"), 0o700),
		writeFile(m("app/cache/fresh"), "new\n", 0o600),
		writeFile(m("app/run.sh"), "#!/bin/sh\necho hi\n", 0o755),
		func() error { return os.Link(m("app/run.sh"), m("app/run-again.sh")) },
		func() error { return os.Symlink("run.sh", m("app/latest")) },
		func() error { return unix.Mkfifo(m("app/pipe"), 0o600) },
		func() error { return os.Chtimes(m("app/config"), t, t) },
	})
	if uerr := unix.Unmount(merged, 0); err == nil && uerr != nil {
		err = fmt.Errorf("unmounting %s: %w", merged, uerr)
	}
	return upper, err
}

func runSteps(steps []func() error) error {
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	return nil
}

// mkdir and writeFile set the mode exactly, whatever the umask.
func mkdir(p string, mode os.FileMode) func() error {
	return func() error {
		if err := os.MkdirAll(p, mode); err != nil {
			return err
		}
		return os.Chmod(p, mode)
	}
}

func writeFile(p, data string, mode os.FileMode) func() error {
	return func() error {
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			return err
		}
		return os.Chmod(p, mode)
	}
}
