#!/usr/bin/env bash
# bench/podman.sh: `layercommit commit --runtime podman` against `podman
# commit` of the same container, both into the container's own store and,
# for layercommit, into an OCI layout too.
#
#   bench/podman.sh [-n RUNS] [SRC_DIR...]
#
# It makes a private podman 4.3 store under a temp dir (the flags of
# internal/oracle/podman.go), loads the base image of scripts/oracles.sh's
# dockerd into it, creates a container and `podman cp`s SRC_DIRs into it
# (default the Go tree, ~250 MB) so the upper dir is written by podman.
# Then, RUNS times (default 3):
#   podman       podman commit CTR bench:podman   (tar, then unpack into the store)
#   lc-store     layercommit commit --container CTR -o containers-storage:bench:lc
#   lc-oci       layercommit commit --container CTR -o oci:DIR (walk, tar, pgzip, write)
# and prints every run, the medians, the ratio podman/lc-store, layercommit's
# peak RSS and whether the top diffIDs of the two store images agree.
# Everything it made is removed on exit.
set -euo pipefail

. "$(dirname "$0")/lib.sh"
bench_args podman /usr/local/go -- "$@"
source scripts/oracles.sh
set +u
oracles_up
set -u

work=$(mktemp -d /tmp/layercommit-bench-podman.XXXXXX)
root=$work/root run=$work/run
pm() { podman --root "$root" --runroot "$run" --tmpdir "$work/tmp" --storage-driver overlay --cgroup-manager cgroupfs --events-backend file "$@"; }
cleanup() {
	pm rm -af -t 0 >/dev/null 2>&1 || true
	pm rmi -af >/dev/null 2>&1 || true
	grep -o " $work/[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "building layercommit" >&2
go build -o "$work/layercommit" ./cmd/layercommit
lc=$work/layercommit
/usr/bin/docker -H "$LAYERCOMMIT_DOCKER_HOST" save -o "$work/base.tar" "$LAYERCOMMIT_BASE_IMAGE"
base=$(pm load -q -i "$work/base.tar" | sed 's/^Loaded image: //')
ctr=$(pm create --network none "$base" true)
for s in "${srcs[@]}"; do
	pm cp "$s" "$ctr:/$(basename "$s")-bench"
done
sync

secs() { python3 -c 'import sys; print("%.2f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$@"; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
top() { pm image inspect --format '{{range .RootFS.Layers}}{{.}} {{end}}' "$1" | awk '{print $NF}'; }

: >"$work/podman" >"$work/store" >"$work/oci" >"$work/rss"
same=yes
printf '%-4s %9s %10s %8s %8s\n' run podman_s lc_store_s lc_oci_s rss_MiB
for i in $(seq 1 "$runs"); do
	t0=$(now)
	pm commit -q "$ctr" bench:podman >/dev/null
	t1=$(now)
	/usr/bin/time -f '%M' -o "$work/time" "$lc" commit -q --runtime podman --storage-root "$root" --run-root "$run" --container "$ctr" -o containers-storage:bench:lc >/dev/null
	t2=$(now)
	rm -rf "$work/layout"
	"$lc" commit -q --runtime podman --storage-root "$root" --run-root "$run" --container "$ctr" -o "oci:$work/layout:b" >/dev/null
	t3=$(now)
	[ "$(top bench:podman)" = "$(top bench:lc)" ] || { same=no; echo "run $i: top diffIDs differ: podman $(top bench:podman), layercommit $(top bench:lc)" >&2; }
	pm rmi -f bench:podman bench:lc >/dev/null
	sync
	p=$(secs "$t0" "$t1") s=$(secs "$t1" "$t2") o=$(secs "$t2" "$t3")
	rss=$(awk '{printf "%.1f", $1/1024}' "$work/time")
	echo "$p" >>"$work/podman"; echo "$s" >>"$work/store"; echo "$o" >>"$work/oci"; echo "$rss" >>"$work/rss"
	printf '%-4s %9s %10s %8s %8s\n' "$i" "$p" "$s" "$o" "$rss"
done
mp=$(median <"$work/podman") ms=$(median <"$work/store") mo=$(median <"$work/oci") mr=$(median <"$work/rss")
printf '%-4s %9s %10s %8s %8s\n' med "$mp" "$ms" "$mo" "$mr"
python3 -c 'import sys; p,s=map(float,sys.argv[1:3]); print(f"podman commit / layercommit -o containers-storage: {p/s:.2f}x")' "$mp" "$ms"
echo "top diffIDs equal: $same"
