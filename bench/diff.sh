#!/usr/bin/env bash
# bench/diff.sh: how fast and how lean `layercommit diff` is on a real
# container's upper dir, next to the floor (`tar -cf - . | sha256sum` of the
# same tree) and `docker commit` of the same container.
#
#   bench/diff.sh [-n RUNS] [--cold] [--keep] [SRC_DIR...]
#
# It starts the private dockerd of scripts/oracles.sh (oracles_up), creates
# a container from the base image and `docker cp`s SRC_DIRs into it (default
# the Go tree and the shared libraries: ~1 GB, ~20k entries), so the upper
# dir is written by the daemon itself. Then, RUNS times (default 3), it
# times, in this order:
#   layercommit  layercommit diff -o - UPPER > /dev/null   (under /usr/bin/time)
#   floor        cd UPPER && tar -cf - . | sha256sum
#   commit       docker commit CONTAINER   (the image is removed after each run)
# and prints every run, the medians, the ratios layercommit/floor (target
# <= 1.0) and commit/layercommit, and layercommit's peak RSS (maxrss of the
# process, i.e. VmHWM; target < 64 MiB).
#
# Page cache: by default the tree is read once, untimed, before the first run
# and every timed read is from a warm cache (the fair comparison of CPU work;
# the tree fits in RAM many times over). With --cold the page cache is dropped
# (sync; echo 3 > /proc/sys/vm/drop_caches) before every timed command, which
# needs root and disturbs everything else on the machine. After each docker
# commit the script runs sync, untimed, so the commit's writeback does not
# land on the next timing.
#
# The container and every committed image are removed on exit unless --keep
# is given (then the container's name and upper dir are printed).
set -euo pipefail

runs=3
cold=0
keep=0
srcs=()
while [ $# -gt 0 ]; do
	case $1 in
	-n) runs=$2; shift 2 ;;
	-n*) runs=${1#-n}; shift ;;
	--cold) cold=1; shift ;;
	--keep) keep=1; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	-*) echo "bench/diff.sh: unknown flag $1" >&2; exit 2 ;;
	*) srcs+=("$1"); shift ;;
	esac
done
case $runs in '' | *[!0-9]* | 0) echo "bench/diff.sh: -n wants a positive number, got '$runs'" >&2; exit 2 ;; esac
if [ ${#srcs[@]} -eq 0 ]; then
	srcs=(/usr/local/go /usr/lib/x86_64-linux-gnu)
fi

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck source=../scripts/oracles.sh
source scripts/oracles.sh
set +u
oracles_up
set -u
docker() { /usr/bin/docker -H "$LAYERCOMMIT_DOCKER_HOST" "$@"; }

if [ ! -x /usr/bin/time ]; then
	echo "bench: installing GNU time for the peak RSS" >&2
	apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends time >&2
fi

work=$(mktemp -d /tmp/layercommit-bench.XXXXXX)
name=lc-bench-$$
images=()
cleanup() {
	local rc=$?
	set +e
	for img in "${images[@]}"; do docker rmi -f "$img" >/dev/null 2>&1; done
	if [ $keep = 0 ]; then
		docker rm -f "$name" >/dev/null 2>&1
	else
		echo "kept container $name (remove with: docker -H $LAYERCOMMIT_DOCKER_HOST rm -f $name)"
	fi
	rm -rf "$work"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "building layercommit" >&2
go build -o "$work/layercommit" ./cmd/layercommit
lc=$work/layercommit

echo "preparing the upper dir: docker cp ${srcs[*]} into a container of $LAYERCOMMIT_BASE_IMAGE" >&2
docker create --name "$name" "$LAYERCOMMIT_BASE_IMAGE" true >/dev/null
i=0
for s in "${srcs[@]}"; do
	i=$((i + 1))
	# /tmp exists in the base image; each source becomes /tmp/bench<i>.
	docker cp "$s" "$name:/tmp/bench$i"
done
upper=$(docker inspect -f '{{.GraphDriver.Data.UpperDir}}' "$name")
entries=$(($(find "$upper" | wc -l) - 1)) # the root is not an entry
bytes=$(du -sb --apparent-size "$upper" | cut -f1)
files=$(find "$upper" -type f | wc -l)

drop() {
	if [ $cold = 1 ]; then
		sync
		echo 3 >/proc/sys/vm/drop_caches
	fi
}
now() { date +%s%N; }
ms() { echo $((($2 - $1) / 1000000)); }

if [ $cold = 0 ]; then
	echo "warming the page cache (one untimed read of the tree)" >&2
	(cd "$upper" && tar -cf - . | cat >/dev/null)
fi

lc_ms=() floor_ms=() commit_ms=() rss_kb=() lc_cpu=()
for r in $(seq 1 "$runs"); do
	drop
	t0=$(now)
	/usr/bin/time -f '%M %U %S' -o "$work/time" "$lc" diff -o - "$upper" >/dev/null 2>"$work/lc.err" ||
		{ cat "$work/lc.err" >&2; exit 1; }
	t1=$(now)
	lc_ms+=("$(ms "$t0" "$t1")")
	read -r kb usr sys <"$work/time"
	rss_kb+=("$kb")
	lc_cpu+=("$(awk -v u="$usr" -v s="$sys" 'BEGIN { printf "%d", (u + s) * 1000 }')")
	diffid=$(tail -1 "$work/lc.err")

	drop
	t0=$(now)
	(cd "$upper" && tar -cf - . | sha256sum >/dev/null)
	t1=$(now)
	floor_ms+=("$(ms "$t0" "$t1")")

	drop
	t0=$(now)
	img=$(docker commit "$name")
	t1=$(now)
	commit_ms+=("$(ms "$t0" "$t1")")
	images+=("$img")
	docker rmi -f "$img" >/dev/null
	sync

	printf 'run %d: layercommit %6d ms (cpu %d ms, rss %d KiB)  floor %6d ms  docker commit %6d ms\n' \
		"$r" "${lc_ms[-1]}" "${lc_cpu[-1]}" "$kb" "${floor_ms[-1]}" "${commit_ms[-1]}"
done

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
max() { printf '%s\n' "$@" | sort -n | tail -1; }
m_lc=$(median "${lc_ms[@]}")
m_floor=$(median "${floor_ms[@]}")
m_commit=$(median "${commit_ms[@]}")
m_cpu=$(median "${lc_cpu[@]}")
peak=$(max "${rss_kb[@]}")

cache=warm
[ $cold = 1 ] && cache="cold (dropped before each command)"
cat <<EOF

tree:            $entries entries ($files regular files), $bytes bytes, from ${srcs[*]}
upper dir:       $upper
diffID:          $diffid
page cache:      $cache
runs:            $runs (medians below)
layercommit:     $m_lc ms wall, $m_cpu ms cpu (layercommit diff -o - UPPER > /dev/null)
floor:           $m_floor ms (tar -cf - . | sha256sum)
docker commit:   $m_commit ms
peak RSS:        $((peak / 1024)) MiB ($peak KiB, largest of the runs; target < 64 MiB)
EOF
awk -v lc="$m_lc" -v fl="$m_floor" -v dc="$m_commit" -v rss="$peak" 'BEGIN {
	printf "layercommit/floor:         %.2f (target <= 1.00) %s\n", lc / fl, (lc <= fl ? "ok" : "MISSED")
	printf "docker commit/layercommit: %.1fx\n", dc / lc
	printf "peak RSS:                  %s\n", (rss < 64 * 1024 ? "ok" : "MISSED")
}'
