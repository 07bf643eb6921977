#!/usr/bin/env bash
# bench/commit.sh: `layercommit commit ... -o docker://` against `docker
# commit` + `docker push` of the same container to the same kind of local
# registry, plus layercommit's compression throughput against
# single-threaded gzip and its peak RSS.
#
#   bench/commit.sh [-n RUNS] [SRC_DIR...]
#
# It starts the private dockerd of scripts/oracles.sh, creates a container
# from the base image and `docker cp`s SRC_DIRs into it (default the Go tree
# and the shared libraries, ~1 GB, as bench/diff.sh does), so the upper dir
# is written by the daemon. The base image is saved once as a docker-archive
# for layercommit's --from. Then, RUNS times (default 3), each against a
# fresh docker-registry on 127.0.0.1:
#   docker       docker commit CONTAINER R/bench:docker && docker push
#   layercommit  layercommit commit --from docker-archive:BASE --upper UPPER
#                -o docker://R/bench:lc          (under /usr/bin/time)
#   gzip         layercommit diff's tar | gzip -6 (one core) > /dev/null
#   lc-gzip      layercommit commit ... -o oci:DIR (walk, tar, pgzip, write)
# and prints every run, the medians, the ratios (targets: docker/layercommit
# >= 5, gzip/lc-gzip >= 1.8 on 2 cores), layercommit's peak RSS (target
# < 64 MiB) and whether the diffIDs of the two pushed images agree.
# The tar for gzip is written once, untimed, to a temp file.
set -euo pipefail

. "$(dirname "$0")/lib.sh"
bench_args commit /usr/local/go /usr/lib/x86_64-linux-gnu -- "$@"
source scripts/oracles.sh
set +u
oracles_up
set -u
docker() { /usr/bin/docker -H "$LAYERCOMMIT_DOCKER_HOST" "$@"; }

work=$(mktemp -d /tmp/layercommit-bench-commit.XXXXXX)
ctr=""
reg_pid=""
stop_registry() {
	if [ -n "$reg_pid" ]; then kill "$reg_pid" 2>/dev/null || true; wait "$reg_pid" 2>/dev/null || true; reg_pid=""; fi
}
cleanup() {
	stop_registry
	[ -z "$ctr" ] || docker rm -f "$ctr" >/dev/null 2>&1 || true
	docker images --format '{{.Repository}}:{{.Tag}}' | grep '/bench:' | xargs -r docker rmi -f >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_registry starts a fresh docker-registry and sets $reg (host:port).
start_registry() {
	local port dir=$work/registry-$1
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	mkdir -p "$dir"
	printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' "$dir/data" "$port" >"$dir/config.yml"
	/usr/bin/docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
	reg_pid=$!
	reg=127.0.0.1:$port
	local i
	for i in $(seq 1 100); do
		curl -fs "http://$reg/v2/" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "bench/commit.sh: registry did not start" >&2
	return 1
}

echo "building layercommit" >&2
go build -o "$work/layercommit" ./cmd/layercommit
lc=$work/layercommit
# The diffIDs can only agree if layercommit writes the bytes of the
# daemon's version; COMPAT overrides the guess.
case $(docker version -f '{{.Server.Version}}') in
20.10.*) compat=${COMPAT:-docker-20.10} ;;
*) compat=${COMPAT:-docker-24} ;;
esac

ctr=$(docker create "$LAYERCOMMIT_BASE_IMAGE" true)
for s in "${srcs[@]}"; do
	docker cp "$s" "$ctr:/$(basename "$s")-bench"
done
upper=$(docker inspect -f '{{.GraphDriver.Data.UpperDir}}' "$ctr")
docker save -o "$work/base.tar" "$LAYERCOMMIT_BASE_IMAGE"
"$lc" diff --compat "$compat" -o "$work/layer.tar" "$upper" >"$work/diffid"
tarbytes=$(stat -c %s "$work/layer.tar")
printf 'upper dir: %s (%d MiB of tar, %s)\n' "$upper" $((tarbytes >> 20)) "$(cat "$work/diffid")"
sync

secs() { python3 -c 'import sys; print("%.2f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$@"; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

: >"$work/lc1" >"$work/docker" >"$work/lc" >"$work/gzip" >"$work/lcgzip" >"$work/rss"
same=yes
printf '%-4s %10s %12s %8s %9s %10s %10s\n' run docker_s layercommit_s gzip_s lc_gzip_s lc_1core_s rss_MiB
for i in $(seq 1 "$runs"); do
	start_registry "d$i"
	dref=$reg/bench:docker
	t0=$(now)
	docker commit "$ctr" "$dref" >/dev/null
	docker push "$dref" >/dev/null
	t1=$(now)
	stop_registry
	sync
	start_registry "l$i"
	t2=$(now)
	/usr/bin/time -f '%M' -o "$work/time" "$lc" commit -q --compat "$compat" --from "docker-archive:$work/base.tar" --upper "$upper" -o "docker://$reg/bench:lc" >/dev/null
	t3=$(now)
	ddiff=$(docker image inspect -f '{{range .RootFS.Layers}}{{.}} {{end}}' "$dref" | awk '{print $NF}')
	ldiff=$("$lc" inspect --json "docker://$reg/bench:lc" | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][-1]["diffID"])')
	[ "$ddiff" = "$ldiff" ] || { same=no; echo "run $i: diffIDs differ: docker $ddiff, layercommit $ldiff" >&2; }
	docker rmi -f "$dref" >/dev/null
	stop_registry
	sync
	t4=$(now)
	gzip -6 -c <"$work/layer.tar" >/dev/null
	t5=$(now)
	rm -rf "$work/oci"
	t6=$(now)
	"$lc" commit -q --compat "$compat" --upper "$upper" -o "oci:$work/oci:bench" >/dev/null
	t7=$(now)
	rm -rf "$work/oci"
	GOMAXPROCS=1 "$lc" commit -q --compat "$compat" --upper "$upper" -o "oci:$work/oci:bench" >/dev/null
	t8=$(now)
	rm -rf "$work/oci"
	d=$(secs "$t0" "$t1") l=$(secs "$t2" "$t3") g=$(secs "$t4" "$t5") lg=$(secs "$t6" "$t7") l1=$(secs "$t7" "$t8")
	rss=$(awk '{printf "%.1f", $1/1024}' "$work/time")
	echo "$d" >>"$work/docker"; echo "$l" >>"$work/lc"; echo "$g" >>"$work/gzip"; echo "$lg" >>"$work/lcgzip"; echo "$l1" >>"$work/lc1"; echo "$rss" >>"$work/rss"
	printf '%-4s %10s %12s %8s %9s %10s %10s\n' "$i" "$d" "$l" "$g" "$lg" "$l1" "$rss"
done
md=$(median <"$work/docker") ml=$(median <"$work/lc") mg=$(median <"$work/gzip") mlg=$(median <"$work/lcgzip") mr=$(median <"$work/rss") m1=$(median <"$work/lc1")
printf '%-4s %10s %12s %8s %9s %10s %10s\n' med "$md" "$ml" "$mg" "$mlg" "$m1" "$mr"
python3 - "$md" "$ml" "$mg" "$mlg" "$mr" "$tarbytes" "$same" "$m1" "$compat" <<'PY'
import sys
d, l, g, lg, rss, tb = map(float, sys.argv[1:7])
one = float(sys.argv[8])
mib = tb / (1 << 20)
print(f"docker commit+push / layercommit commit -o docker://: {d / l:.2f}x (target >= 5)")
print(f"compression: gzip -6 one core {mib / g:.0f} MiB/s, layercommit commit (walk+tar+pgzip+write) {mib / lg:.0f} MiB/s: {g / lg:.2f}x (target >= 1.8)")
print(f"  the same with GOMAXPROCS=1: {mib / one:.0f} MiB/s ({g / one:.2f}x gzip; parallel speedup {one / lg:.2f}x)")
print(f"layercommit peak RSS (median): {rss:.1f} MiB (target < 64)")
print(f"same diffID as docker commit (--compat {sys.argv[9]}): {sys.argv[7]}")
PY
