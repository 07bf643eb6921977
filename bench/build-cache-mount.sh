#!/usr/bin/env bash
# bench/build-cache-mount.sh: a RUN whose cache mount holds a large
# download (default 300 MiB, made with head -c from /dev/urandom the first
# time: no internet), rebuilt warm by layercommit and by BuildKit.
#
#   bench/build-cache-mount.sh [-n RUNS] [--mib N]
#
# Each round makes a fresh cache id (so both start cold), builds once cold
# (fills the cache; not timed) and then times the warm rebuild: a changed
# build arg reruns the RUN, which finds the download in the cache and reads
# it whole (cat > /dev/null, as an install from a cached download reads it;
# not busybox wc, whose counting would dominate) and writes its size into
# the image. The rebuild must report a cache hit, else the bench fails. Both export an OCI layout directory:
#   layercommit  layercommit build -o oci:DIR (one state dir per round)
#   buildkit     buildctl build --frontend dockerfile.v0 --output type=oci
#                on the buildkitd of scripts/oracles.sh (its cache mounts of
#                the round are pruned afterwards)
# and prints every run, the medians and the ratio layercommit/buildkit
# (target <= 1.0). build.sh runs it after its own scenario.
set -euo pipefail

runs=3
mib=300
while [ $# -gt 0 ]; do
	case $1 in
	-n) runs=$2; shift 2 ;;
	--mib) mib=$2; shift 2 ;;
	*) echo "usage: bench/build-cache-mount.sh [-n RUNS] [--mib N]" >&2; exit 2 ;;
	esac
done

cd "$(dirname "$0")/.."
# shellcheck source=/dev/null
. scripts/oracles.sh
oracles_up >/dev/null
bctl() { "$LAYERCOMMIT_BUILDCTL" --addr "$LAYERCOMMIT_BUILDKIT_HOST" "$@"; }

work=$(mktemp -d /tmp/layercommit-bench-cachemount.XXXXXX)
nonces=()
cleanup() {
	for n in "${nonces[@]}"; do bctl prune --filter "description~=dl-$n" >/dev/null 2>&1 || true; done
	rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/layercommit" ./cmd/layercommit

ctx=$work/ctx
mkdir -p "$ctx"
cat >"$ctx/Dockerfile" <<DF
FROM $LAYERCOMMIT_BUILDKIT_BASE
ARG ID BUST
RUN --mount=type=cache,id=dl-\$ID,target=/var/cache/dl \\
    if [ -f /var/cache/dl/big.bin ]; then echo hit > /cache-hit; else echo miss > /cache-hit; \\
      head -c $((mib << 20)) /dev/urandom > /var/cache/dl/big.bin; fi && \\
    cat /var/cache/dl/big.bin > /dev/null && stat -c %s /var/cache/dl/big.bin > /installed && echo "\$BUST" > /bust
DF

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
lc() { # state id bust out
	"$work/layercommit" build -q --state-dir "$1" --build-arg "ID=$2" --build-arg "BUST=$3" -o "oci:$4" "$ctx" >/dev/null
}
bk() { # id bust out
	bctl build --progress quiet --frontend dockerfile.v0 --local "context=$ctx" --local "dockerfile=$ctx" \
		--opt "build-arg:ID=$1" --opt "build-arg:BUST=$2" --output "type=oci,dest=$3,tar=false" 2>&1 >/dev/null |
		{ grep -v 'fsverity' >&2 || true; }
}
# hit LAYOUT: the warm build found the download in its cache (/cache-hit).
hit() {
	local b
	for b in "$1"/blobs/sha256/*; do
		if [ "$(tar -xzOf "$b" cache-hit 2>/dev/null)" = hit ]; then return 0; fi
	done
	echo "bench: $1: the warm rebuild did not find the download in its cache mount" >&2
	exit 1
}
declare -a tl tb
for r in $(seq 1 "$runs"); do
	n=$(date +%s%N)-$r
	nonces+=("$n")
	state=$work/state-$r
	lc "$state" "$n" cold "$work/lc-cold-$r"
	bk "$n" cold "$work/bk-cold-$r"
	sync
	t0=$(now)
	lc "$state" "$n" warm "$work/lc-warm-$r"
	t1=$(now)
	bk "$n" warm "$work/bk-warm-$r"
	t2=$(now)
	hit "$work/lc-warm-$r"
	hit "$work/bk-warm-$r"
	tl[r]=$(echo "$t1 - $t0" | bc)
	tb[r]=$(echo "$t2 - $t1" | bc)
	printf 'run %d: warm rebuild with a %d MiB cache mount: layercommit %.2fs  buildkit %.2fs\n' "$r" "$mib" "${tl[r]}" "${tb[r]}"
	bctl prune --filter "description~=dl-$n" >/dev/null 2>&1 || true
	rm -rf "$state" "$work"/lc-*-"$r" "$work"/bk-*-"$r"
done
ml=$(printf '%s\n' "${tl[@]}" | median)
mb=$(printf '%s\n' "${tb[@]}" | median)
printf 'median: layercommit %.2fs  buildkit %.2fs\n' "$ml" "$mb"
printf 'ratio layercommit/buildkit %.2f (target <= 1.0)\n' "$(echo "$ml / $mb" | bc -l)"
