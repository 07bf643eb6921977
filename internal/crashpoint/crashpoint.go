// Package crashpoint kills the process at named points of a store write,
// for crash tests. The environment variable LAYERCOMMIT_CRASH_AT names the
// point; it is read once. When it is unset (always, outside tests) At
// does nothing.
//
// The kill is SIGKILL sent to the process itself: no deferred function,
// no cleanup and no buffered write runs, as with `kill -9` or a power cut
// of the process (the page cache survives; see HOSTILE.md F6 for what
// directory fsyncs add).
package crashpoint

import (
	"os"
	"sync"
	"syscall"
)

// Env names the point to crash at.
const Env = "LAYERCOMMIT_CRASH_AT"

var (
	once  sync.Once
	point string
)

// At kills the process if name is the configured crash point.
func At(name string) {
	once.Do(func() { point = os.Getenv(Env) })
	if point == "" || point != name {
		return
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is delivered before this blocks for long
}
