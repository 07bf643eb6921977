#!/usr/bin/env bash
# bench/containerd.sh: `layercommit commit --container` against `docker
# commit` on Docker 29's containerd image store, for a large image with a
# small change (issue 12's speed target: layercommit at least 2x faster,
# same diffID).
#
#   bench/containerd.sh [-n RUNS] [--mib N]
#
# It starts the oracles of scripts/oracles.sh (the Docker 29 on its
# containerd store among them), imports an image of --mib MiB (default
# 1024: 1 MiB files of random bytes, plus 20,000 4 KiB files, over the
# busybox base; `docker import`, so mtimes are whole seconds as in any
# image pulled from a registry) and runs a container that changes two
# files and adds a dir. Then, RUNS times (default 3):
#   docker       docker commit CTR              (the walking differ over
#                                                both whole trees, gzip,
#                                                apply into a snapshot)
#   layercommit  layercommit commit --container CTR --docker-root ROOT
#                -o oci:DIR                      (under /usr/bin/time)
# and prints every run, the medians, the ratio docker/layercommit, the
# peak RSS and whether the new layer's diffIDs agree.
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
docker() { /usr/bin/docker -H "$LAYERCOMMIT_DOCKER29C_HOST" "$@"; }

work=$(mktemp -d /tmp/layercommit-bench-containerd.XXXXXX)
ctr=""
cleanup() {
	[ -z "$ctr" ] || docker rm -f "$ctr" >/dev/null 2>&1 || true
	docker images -q --filter reference='bench-containerd*' | xargs -r docker rmi -f >/dev/null 2>&1 || true
	docker images -q --filter dangling=true | xargs -r docker rmi -f >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

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
ctr=$(docker run -d --network none bench-containerd:big sh -c 'echo changed >/big/f1; echo more >>/small/d007/f042; mkdir -p /new/dir; echo x >/new/dir/y; touch /ready; exec sleep 3600')
for i in $(seq 1 200); do
	docker exec "$ctr" test -e /ready 2>/dev/null && break
	sleep 0.1
done
sync

secs() { python3 -c 'import sys; print("%.2f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$@"; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

: >"$work/docker" >"$work/lc" >"$work/rss"
same=yes
printf '%-4s %9s %14s %8s\n' run docker_s layercommit_s rss_MiB
for i in $(seq 1 "$runs"); do
	t0=$(now)
	img=$(docker commit "$ctr")
	t1=$(now)
	rm -rf "$work/layout"
	/usr/bin/time -f '%M' -o "$work/time" "$lc" commit -q --container "$ctr" --docker-root "$LAYERCOMMIT_DOCKER29C_ROOT" -o "oci:$work/layout:lc" >/dev/null
	t2=$(now)
	want=$(docker image inspect -f '{{range .RootFS.Layers}}{{.}} {{end}}' "$img" | awk '{print $NF}')
	got=$(python3 - "$work/layout" <<'PY'
import json, os, sys
d = sys.argv[1]
idx = json.load(open(os.path.join(d, "index.json")))
def blob(dg):
    return json.load(open(os.path.join(d, "blobs", *dg.split(":"))))
m = blob(idx["manifests"][0]["digest"])
print(blob(m["config"]["digest"])["rootfs"]["diff_ids"][-1])
PY
)
	[ "$want" = "$got" ] || { same=no; echo "run $i: diffIDs differ: docker $want, layercommit $got" >&2; }
	docker rmi -f "$img" >/dev/null
	sync
	dt=$(secs "$t0" "$t1") lt=$(secs "$t1" "$t2")
	rss=$(awk '{printf "%.1f", $1/1024}' "$work/time")
	echo "$dt" >>"$work/docker"; echo "$lt" >>"$work/lc"; echo "$rss" >>"$work/rss"
	printf '%-4s %9s %14s %8s\n' "$i" "$dt" "$lt" "$rss"
done
md=$(median <"$work/docker") ml=$(median <"$work/lc") mr=$(median <"$work/rss")
printf '%-4s %9s %14s %8s\n' med "$md" "$ml" "$mr"
python3 -c 'import sys; d,l=map(float,sys.argv[1:3]); print(f"docker commit / layercommit commit: {d/l:.2f}x (target >= 2)")' "$md" "$ml"
echo "new layer diffIDs equal: $same"
