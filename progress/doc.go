// Package progress renders a build's progress stream (the builder's
// legacy `docker build` lines: "Step N/M : ...", " ---> Using cache",
// " ---> ID", "[WARNING]...", and RUN output) in the --progress modes:
// plain (one line per step event, BuildKit's "#N" shape, with each step's
// duration), rawjson (one JSON object per line), tty (plain plus a live
// timer on the running step and, between steps, a tracked push's bytes
// done, rate and ETA: Track, FormatTransfer) and quiet (nothing).
//
// Stage: a sink beside the pipeline; the CLI injects it as the
// builder's Progress writer. It reads the builder's text stream rather
// than typed events so that no builder file changes with it.
//
// Non-goals: a multi-line redrawn view like BuildKit's, progress bars
// for pulls, a rate smoothed over a window (the rate is the mean since
// the transfer started).
package progress
