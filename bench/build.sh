#!/usr/bin/env bash
# bench/build.sh: the same Dockerfile built by `docker build` (legacy
# builder, --network none) and by `layercommit build`, without cache, and a
# cached `layercommit build` rebuild.
#
#   bench/build.sh [-n RUNS] [--files N]
#
# It starts the private dockerd of scripts/oracles.sh (oracles_up), saves
# its base image to a docker-archive for layercommit's FROM, and writes a
# context with a Dockerfile of ARG/ENV/WORKDIR steps, two COPYs (N small
# files, default 2000, and one 20 MiB file) and three RUNs (one writes N
# files, one deletes some, one changes nothing). RUNS times (default 3)
# it times, in this order:
#   docker       DOCKER_BUILDKIT=0 docker build --no-cache --network none
#   layercommit  layercommit build --no-cache -o oci:DIR (fresh state dir
#                each run, so base layers are unpacked every time)
#   cached       layercommit build -o oci:DIR again, same state dir
# and prints every run, the medians and the ratios layercommit/docker
# (target <= 1.0) and cached/layercommit (target <= 0.33).
#
# Then the cache-mount scenario (bench/build-cache-mount.sh, --mib N,
# default 300): the warm rebuild of a RUN whose cache mount holds a large
# download, layercommit against BuildKit. --cache-mount-only runs just it.
set -euo pipefail

runs=3
files=2000
mib=300
only=
while [ $# -gt 0 ]; do
	case $1 in
	-n) runs=$2; shift 2 ;;
	--files) files=$2; shift 2 ;;
	--mib) mib=$2; shift 2 ;;
	--cache-mount-only) only=1; shift ;;
	*) echo "usage: bench/build.sh [-n RUNS] [--files N] [--mib N] [--cache-mount-only]" >&2; exit 2 ;;
	esac
done
if [ -n "$only" ]; then
	exec "$(dirname "$0")/build-cache-mount.sh" -n "$runs" --mib "$mib"
fi

cd "$(dirname "$0")/.."
# shellcheck source=/dev/null
. scripts/oracles.sh
oracles_up >/dev/null
docker() { /usr/bin/docker -H "$LAYERCOMMIT_DOCKER_HOST" "$@"; }

work=$(mktemp -d /tmp/layercommit-bench-build.XXXXXX)
trap 'rm -rf "$work"; docker rmi -f lc-bench-build:docker >/dev/null 2>&1 || true' EXIT
go build -o "$work/layercommit" ./cmd/layercommit
docker save -o "$work/base.tar" "$LAYERCOMMIT_BASE_IMAGE"

ctx=$work/ctx
mkdir -p "$ctx/many"
for i in $(seq 1 "$files"); do echo "file $i" >"$ctx/many/f$i"; done
head -c $((20 << 20)) /dev/urandom >"$ctx/big.bin"
cat >"$ctx/Dockerfile" <<DF
FROM $LAYERCOMMIT_BASE_IMAGE
ARG N=$files
ENV APP=/app
WORKDIR /app
COPY many/ /app/many/
COPY big.bin /app/
RUN mkdir -p /app/gen && cd /app/gen && i=0; while [ \$i -lt \$N ]; do echo \$i > g\$i; i=\$((i+1)); done
RUN rm -f /app/many/f1* /data/basefile
RUN true
CMD ["sh"]
DF

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -a td tl tc
for r in $(seq 1 "$runs"); do
	sync
	t0=$(now)
	DOCKER_BUILDKIT=0 docker build -q --no-cache --network none -t lc-bench-build:docker "$ctx" >/dev/null
	t1=$(now)
	sync
	state=$work/state-$r
	t2=$(now)
	"$work/layercommit" build -q --no-cache --state-dir "$state" \
		--build-context "$LAYERCOMMIT_BASE_IMAGE=docker-archive:$work/base.tar" -o "oci:$work/out-$r" "$ctx" >/dev/null
	t3=$(now)
	"$work/layercommit" build -q --state-dir "$state" \
		--build-context "$LAYERCOMMIT_BASE_IMAGE=docker-archive:$work/base.tar" -o "oci:$work/out-$r-cached" "$ctx" >/dev/null
	t4=$(now)
	td[r]=$(echo "$t1 - $t0" | bc)
	tl[r]=$(echo "$t3 - $t2" | bc)
	tc[r]=$(echo "$t4 - $t3" | bc)
	printf 'run %d: docker %.2fs  layercommit %.2fs  cached %.2fs\n' "$r" "${td[r]}" "${tl[r]}" "${tc[r]}"
	rm -rf "$state" "$work/out-$r" "$work/out-$r-cached"
done
md=$(printf '%s\n' "${td[@]}" | median)
ml=$(printf '%s\n' "${tl[@]}" | median)
mc=$(printf '%s\n' "${tc[@]}" | median)
printf 'median: docker %.2fs  layercommit %.2fs  cached %.2fs\n' "$md" "$ml" "$mc"
printf 'ratio layercommit/docker %.2f (target <= 1.0)\n' "$(echo "$ml / $md" | bc -l)"
printf 'ratio cached/uncached    %.2f (target <= 0.33)\n' "$(echo "$mc / $ml" | bc -l)"
echo "cache-mount scenario:"
bench/build-cache-mount.sh -n "$runs" --mib "$mib"
