#!/usr/bin/env bash
# Runs each fuzz target for a fixed time (default 60s each), one after the
# other: tar unpack (nothing outside the root changes), diff -> apply round
# trip (the merged view is reproduced) and Dockerfile parse and expansion
# (no panic). Not part of CI. Needs root (devices, overlay mounts).
# A failing input is written to <pkg>/testdata/fuzz/<Target>/; commit it
# with the fix.
#   scripts/fuzz.sh [DURATION] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
time=${1:-60s}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(FuzzUnpack FuzzRoundTrip FuzzParse)
status=0
for t in "${targets[@]}"; do
	case $t in
	FuzzUnpack) pkg=./unpack ;;
	FuzzRoundTrip) pkg=./diff ;;
	FuzzParse) pkg=./builder ;;
	*) echo "fuzz.sh: unknown target $t" >&2; exit 2 ;;
	esac
	echo "== $t ($pkg, $time)"
	# Inputs that reach new coverage are minimized for at most 3s: with
	# the default 60s, slow targets (unpack makes a tree per input) spend
	# most of their time minimizing, and the exec counter stands still.
	go test "$pkg" -run '^$' -fuzz "^$t\$" -fuzztime "$time" -fuzzminimizetime "${FUZZ_MINIMIZE_TIME:-3s}" || status=1
done
exit $status
