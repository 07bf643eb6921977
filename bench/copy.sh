#!/usr/bin/env bash
# bench/copy.sh: layercommit's COPY of a large tree against `cp -a` of the
# same tree, and its peak RSS as the tree grows.
#
#   bench/copy.sh [-n RUNS] [SRC_DIR]
#
# On a fresh journaled ext4 (bench_journaled_fs in lib.sh), interleaved,
# RUNS times (default 3): `cp -a` of SRC_DIR (default the Go source tree,
# ~157 MB, 11k files) into the file system, then `layercommit build
# --no-cache -o oci:DIR` of `FROM scratch` + `COPY src/ /src/` of a context
# holding that tree (fresh state dir and layout each run: the whole build,
# layer and gzip included), with peak RSS from /usr/bin/time; the copies
# are synced and removed between runs. Then once with a context of the
# tree four times over, to show the RSS does not grow with the context.
# Prints every run, the medians and the ratio build / cp -a (target
# <= 2.5) and the peak RSS (target < 128 MiB whatever the context size).
set -euo pipefail

# shellcheck source=/dev/null
. "$(dirname "$0")/lib.sh"
bench_args copy "$(go env GOROOT)/src" -- "$@"
src=${srcs[0]}
[ "$(id -u)" = 0 ] || { echo "bench/copy.sh: run as root (it mounts a loop file system)" >&2; exit 2; }

top=$(mktemp -d /tmp/layercommit-bench-copy.XXXXXX)
cleanup() {
	bench_umount_fs
	rm -rf "$top"
}
trap cleanup EXIT
bench_journaled_fs "$top/fs"
w=$top/fs
go build -o "$w/layercommit" ./cmd/layercommit

mkdir -p "$w/ctx" "$w/ctx4/src"
cp -a "$src" "$w/ctx/src"
printf 'FROM scratch\nCOPY src/ /src/\n' >"$w/ctx/Dockerfile"
for i in 1 2 3 4; do cp -a "$src" "$w/ctx4/src/$i"; done
printf 'FROM scratch\nCOPY src/ /src/\n' >"$w/ctx4/Dockerfile"
sync

# build CTX: seconds and peak RSS (KiB) of one cold build of CTX.
build() {
	local ctx=$1 t0 t1
	rm -rf "$w/state" "$w/out"
	sync
	t0=$(bench_now)
	/usr/bin/time -f %M -o "$w/rss" "$w/layercommit" build --no-cache --state-dir "$w/state" \
		-o "oci:$w/out" "$ctx" >"$w/build.log" 2>&1 || { cat "$w/build.log" >&2; exit 1; }
	t1=$(bench_now)
	echo "$(echo "$t1 - $t0" | bc) $(cat "$w/rss")"
}
cps=() builds=() rsss=()
for r in $(seq 1 "$runs"); do
	rm -rf "$w/cp"
	sync
	t0=$(bench_now)
	cp -a "$src" "$w/cp"
	t1=$(bench_now)
	c=$(echo "$t1 - $t0" | bc)
	read -r b rss <<<"$(build "$w/ctx")"
	cps+=("$c") builds+=("$b") rsss+=("$rss")
	printf 'run %d: cp -a %.2f s  build %.2f s (%.2f x)  peak RSS %d MiB\n' "$r" "$c" "$b" "$(echo "$b / $c" | bc -l)" $((rss / 1024))
done
read -r b4 rss4 <<<"$(build "$w/ctx4")"
mc=$(printf '%s\n' "${cps[@]}" | bench_median)
mb=$(printf '%s\n' "${builds[@]}" | bench_median)
mr=$(printf '%s\n' "${rsss[@]}" | bench_median)
printf '\nmedians of %d runs: cp -a %.2f s, build %.2f s, ratio %.2f (target <= 2.5)\n' "$runs" "$mc" "$mb" "$(echo "$mb / $mc" | bc -l)"
printf 'peak RSS: %d MiB with the tree, %d MiB with it four times over (%.2f s) (target < 128 MiB)\n' \
	$((mr / 1024)) $((rss4 / 1024)) "$b4"
