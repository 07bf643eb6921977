#!/usr/bin/env bash
# bench/buildcache.sh: a fresh CI runner that imports the build cache of an
# earlier identical build from the loopback registry and pushes the image:
# BuildKit (a private buildkitd with an empty root per run, --import-cache
# type=registry) against layercommit (an empty state dir per run,
# --cache-from type=registry).
#
#   bench/buildcache.sh [-n RUNS] [--src DIR]
#
# The context is a copy of SRC (default the Go source tree, ~157 MB, 11k
# files) with a two-stage Dockerfile: COPY src/ /src/, a RUN that reads
# it, then a second stage that adds a user and two COPYs. Both tools first
# build it once and export their cache (mode=max) to the shared loopback
# registry of scripts/oracles.sh; then RUNS times (default 3) each fresh
# runner is timed. Prints every run, the medians and the ratio
# layercommit/BuildKit (target <= 0.7). Every run must be a full cache hit
# (checked: same image ID, resp. no RUN executed).
set -euo pipefail

runs=3
src=$(go env GOROOT)/src
while [ $# -gt 0 ]; do
	case $1 in
	-n) runs=$2; shift 2 ;;
	--src) src=$2; shift 2 ;;
	*) echo "usage: bench/buildcache.sh [-n RUNS] [--src DIR]" >&2; exit 2 ;;
	esac
done

cd "$(dirname "$0")/.."
# shellcheck source=/dev/null
. scripts/oracles.sh
oracles_up >/dev/null
reg=$LAYERCOMMIT_REGISTRY
bins=$(dirname "$LAYERCOMMIT_BUILDCTL")
repo=$reg/lc-bench-cache-$$

work=$(mktemp -d /tmp/layercommit-bench-cache.XXXXXX)
bkpid=
stop_bk() { if [ -n "$bkpid" ]; then kill "$bkpid" 2>/dev/null || true; wait "$bkpid" 2>/dev/null || true; bkpid=; fi; }
trap 'rc=$?; stop_bk; if [ $rc -ne 0 ]; then tail -n 15 "$work"/*.log >&2 || true; fi; rm -rf "$work"' EXIT
go build -o "$work/layercommit" ./cmd/layercommit

ctx=$work/ctx
mkdir -p "$ctx"
cp -a "$src" "$ctx/src"
echo "config" >"$ctx/app.conf"
cat >"$ctx/Dockerfile" <<DF
FROM $LAYERCOMMIT_BUILDKIT_BASE AS build
COPY src/ /src/
RUN find /src -type f | wc -l > /count && echo BUILD-RAN
FROM $LAYERCOMMIT_BUILDKIT_BASE
RUN echo "app:x:1000:1000::/home/app:/bin/sh" >> /etc/passwd && mkdir -p /home/app && echo USER-RAN
COPY --from=build /count /count
COPY app.conf /etc/app.conf
DF

# start_bk starts a private buildkitd with an empty root on its own socket
# (bench_start_buildkitd of lib.sh).
start_bk() {
	bench_start_buildkitd "$work/bk-$1" "$reg" || exit 1
}
bk_build() { # bk_build ARGS...
	"$bins/buildctl" --addr "$bkaddr" build --frontend dockerfile.v0 --local context="$ctx" --local dockerfile="$ctx" \
		--progress plain --output "type=image,name=$repo/bk:img,push=true,registry.insecure=true" "$@"
}
lc_build() { # lc_build STATE ARGS...
	local state=$1
	shift
	"$work/layercommit" build --state-dir "$state" --source-date-epoch 0 -t "$repo/lc:img" --push "$@" "$ctx"
}

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Seed both caches.
start_bk seed
bk_build --export-cache "type=registry,ref=$repo/bk:cache,mode=max,registry.insecure=true" >"$work/bk-seed.log" 2>&1
stop_bk
id=$(lc_build "$work/state-seed" --cache-to "type=registry,ref=$repo/lc:cache,mode=max" 2>"$work/lc-seed.log" | tail -1)

declare -a tb tl
for r in $(seq 1 "$runs"); do
	start_bk "run-$r"
	sync
	t0=$(now)
	bk_build --import-cache "type=registry,ref=$repo/bk:cache,registry.insecure=true" >"$work/bk-$r.log" 2>&1
	t1=$(now)
	stop_bk
	if grep -Eq -- '^#[0-9]+ [0-9.]+ [A-Z]+-RAN$' "$work/bk-$r.log"; then echo "BuildKit run $r ran a RUN step" >&2; exit 1; fi
	sync
	t2=$(now)
	got=$(lc_build "$work/state-$r" --cache-from "type=registry,ref=$repo/lc:cache" 2>"$work/lc-$r.log" | tail -1)
	t3=$(now)
	if [ "$got" != "$id" ] || grep -q -- '^[A-Z]*-RAN$' "$work/lc-$r.log"; then echo "layercommit run $r missed the cache ($got, want $id)" >&2; exit 1; fi
	tb[r]=$(echo "$t1 - $t0" | bc)
	tl[r]=$(echo "$t3 - $t2" | bc)
	printf 'run %d: buildkit %.2fs  layercommit %.2fs\n' "$r" "${tb[r]}" "${tl[r]}"
	rm -rf "$work/state-$r" "$work/bk-run-$r"
done
mb=$(printf '%s\n' "${tb[@]}" | median)
ml=$(printf '%s\n' "${tl[@]}" | median)
printf 'median: buildkit %.2fs  layercommit %.2fs\n' "$mb" "$ml"
printf 'ratio layercommit/buildkit (fresh runner, registry cache) %.2f (target <= 0.7)\n' "$(echo "$ml / $mb" | bc -l)"
