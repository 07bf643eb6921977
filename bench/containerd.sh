#!/usr/bin/env bash
# bench/containerd.sh: `layercommit commit --container` against `docker
# commit` on Docker 29's containerd image store, for a large image with a
# small change (issue 12's speed target: layercommit at least 2x faster,
# same diffID).
#
#   bench/containerd.sh [-n RUNS] [--mib N]
#
# It builds the engines of scripts/engines.sh, starts a private Docker
# 29.7.1 on its containerd image store (the flags of scripts/oracles.sh,
# its own data root under a temp dir), imports an image of --mib MiB
# (default 1024: 1 MiB files of random bytes, plus 20,000 4 KiB files, over
# the busybox base; `docker import`, so mtimes are whole seconds as in any
# image pulled from a registry) and runs a container that changes two
# files and adds a dir. Then, RUNS times (default 3):
#   docker       docker commit CTR               (the walking differ over
#                                                 both whole trees, gzip,
#                                                 apply into a snapshot)
#   lc-store     layercommit commit --container CTR --docker-root ROOT
#                -o docker-root:bench:lc         (dockerd stopped, as a
#                                                 write into its store
#                                                 must be; untimed stop
#                                                 and restart; under
#                                                 /usr/bin/time)
#   lc-oci       the same into -o oci:DIR        (which copies the base's
#                                                 blobs too)
# and prints every run, the medians, the ratio docker/lc-store, the peak
# RSS and whether the new layer's diffIDs agree (the restarted dockerd's
# own view of our image against its commit's).
set -euo pipefail

. "$(dirname "$0")/lib.sh"
mib=1024
args=()
while [ $# -gt 0 ]; do
	case $1 in
	--mib) mib=$2; shift 2 ;;
	*) args+=("$1"); shift ;;
	esac
done
bench_args containerd -- "${args[@]+"${args[@]}"}"
case $mib in '' | *[!0-9]* | 0) echo "bench/containerd.sh: --mib wants a positive number" >&2; exit 2 ;; esac
source scripts/oracles.sh
set +u
oracles_up
set -u
. scripts/engines.sh
bins=$(engines_docker29)

work=$(mktemp -d /tmp/lcbc.XXXXXX)
root=$work/root sock=$work/d.sock
docker() { /usr/bin/docker -H "unix://$sock" "$@"; }
printf '{"features":{"time-namespaces":false,"containerd-snapshotter":true}}\n' >"$work/daemon.json"
dpid=""
start_dockerd() {
	PATH=$bins:$PATH dockerd --config-file "$work/daemon.json" --data-root "$root" --exec-root "$work/x" \
		-H "unix://$sock" --pidfile "$work/docker.pid" --iptables=false --ip6tables=false --bridge=none \
		--userland-proxy=false >>"$work/dockerd.log" 2>&1 &
	dpid=$!
	local i
	for i in $(seq 1 120); do
		docker version >/dev/null 2>&1 && return 0
		sleep 0.5
	done
	tail -20 "$work/dockerd.log" >&2
	return 1
}
stop_dockerd() {
	[ -n "$dpid" ] || return 0
	local cpid
	cpid=$(cat "$work/x/containerd/containerd.pid" 2>/dev/null || true)
	kill "$dpid" 2>/dev/null || true
	wait "$dpid" 2>/dev/null || true
	dpid=""
	while [ -n "$cpid" ] && kill -0 "$cpid" 2>/dev/null; do sleep 0.1; done
}
cleanup() {
	stop_dockerd
	grep -o " $work/[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
start_dockerd

echo "building layercommit" >&2
go build -o "$work/layercommit" ./cmd/layercommit
lc=$work/layercommit

echo "making a $mib MiB image" >&2
rootfs=$work/rootfs
mkdir -p "$rootfs"
/usr/bin/docker -H "$LAYERCOMMIT_DOCKER_HOST" save "$LAYERCOMMIT_BASE_IMAGE" | tar -x -O --wildcards '*.tar' 2>/dev/null | tar -x -C "$rootfs" 2>/dev/null || true
[ -x "$rootfs/bin/busybox" ] || { echo "bench/containerd.sh: could not unpack the base" >&2; exit 1; }
mkdir -p "$rootfs/big" "$rootfs/small"
for i in $(seq 1 "$mib"); do head -c 1048576 /dev/urandom >"$rootfs/big/f$i"; done
python3 - "$rootfs/small" <<'PY'
import os, sys
d = sys.argv[1]
for i in range(200):
    sub = os.path.join(d, "d%03d" % i)
    os.mkdir(sub)
    for j in range(100):
        with open(os.path.join(sub, "f%03d" % j), "wb") as f:
            f.write(os.urandom(4096))
PY
tar -C "$rootfs" -c . | docker import -c 'CMD ["sh"]' - bench-containerd:big >/dev/null
rm -rf "$rootfs"
# The container has made its changes and exited: a stopped container
# survives the daemon's restarts unchanged.
ctr=$(docker create --network none bench-containerd:big sh -c 'echo changed >/big/f1; echo more >>/small/d007/f042; mkdir -p /new/dir; echo x >/new/dir/y')
docker start -a "$ctr" >/dev/null
sync

secs() { python3 -c 'import sys; print("%.2f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$@"; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

: >"$work/docker" >"$work/lc" >"$work/oci" >"$work/rss"
same=yes
top() { docker image inspect -f '{{range .RootFS.Layers}}{{.}} {{end}}' "$1" | awk '{print $NF}'; }
printf '%-4s %9s %10s %8s %8s\n' run docker_s lc_store_s lc_oci_s rss_MiB
for i in $(seq 1 "$runs"); do
	t0=$(now)
	img=$(docker commit "$ctr")
	t1=$(now)
	stop_dockerd
	sync
	t2=$(now)
	/usr/bin/time -f '%M' -o "$work/time" "$lc" commit -q --container "$ctr" --docker-root "$root" -o docker-root:bench:lc >/dev/null
	t3=$(now)
	rm -rf "$work/layout"
	"$lc" commit -q --container "$ctr" --docker-root "$root" -o "oci:$work/layout:lc" >/dev/null
	t4=$(now)
	start_dockerd
	[ "$(top "$img")" = "$(top bench:lc)" ] || { same=no; echo "run $i: diffIDs differ: docker $(top "$img"), layercommit $(top bench:lc)" >&2; }
	docker rmi -f "$img" bench:lc >/dev/null
	sync
	dt=$(secs "$t0" "$t1") lt=$(secs "$t2" "$t3") ot=$(secs "$t3" "$t4")
	rss=$(awk '{printf "%.1f", $1/1024}' "$work/time")
	echo "$dt" >>"$work/docker"; echo "$lt" >>"$work/lc"; echo "$ot" >>"$work/oci"; echo "$rss" >>"$work/rss"
	printf '%-4s %9s %10s %8s %8s\n' "$i" "$dt" "$lt" "$ot" "$rss"
done
md=$(median <"$work/docker") ml=$(median <"$work/lc") mo=$(median <"$work/oci") mr=$(median <"$work/rss")
printf '%-4s %9s %10s %8s %8s\n' med "$md" "$ml" "$mo" "$mr"
python3 -c 'import sys; d,l=map(float,sys.argv[1:3]); print(f"docker commit / layercommit commit -o docker-root: {d/l:.2f}x (target >= 2)")' "$md" "$ml"
echo "new layer diffIDs equal: $same"
