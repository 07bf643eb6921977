#!/usr/bin/env bash
# Runs the whole test suite against real peers: installs Debian's docker.io,
# busybox-static, attr, skopeo, umoci and docker-registry if missing,
# starts a private dockerd, runs `go test`, and stops the daemon again.
# Extra arguments go to `go test` (default: ./...).
set -u
cd "$(dirname "$0")/.."
. scripts/oracles.sh
if ! oracles_up; then
	echo "test.sh: could not start the oracles" >&2
	[ -n "${LAYERCOMMIT_REQUIRE_ORACLES:-}" ] && exit 1
fi
trap 'oracles_stop' EXIT
[ $# -gt 0 ] || set -- ./...
go test -count=1 -timeout 40m "$@"
