#!/usr/bin/env bash
# bench/rootless.sh: the same Dockerfile built by `layercommit build` as
# root and as an ordinary user with subordinate ids (rootless: a user
# namespace, userxattr overlays), without cache, each run with a fresh
# state dir (so base layers are unpacked every time).
#
#   bench/rootless.sh [-n RUNS] [--files N] [--naive-ci]
#
# Run as root: it makes a user (useradd, a subordinate range in
# /etc/subuid and /etc/subgid) for the run and removes it at the end. The
# context is bench/build.sh's (N small files, default 2000, a 20 MiB file,
# RUNs that write N files, delete some, change nothing) on the busybox base
# of scripts/oracles.sh, saved to a docker-archive; every state dir, the
# user's too, on a fresh journaled ext4. RUNS times (default 3)
# it times, in this order:
#   root      layercommit build --no-cache --network none (--overlay native)
#   rootless  the same, run as the user through setpriv (no sudo)
#   fuse      as root, --overlay fuse (fuse-overlayfs; a user may not
#             open /dev/fuse on every host, root always can)
#   naive     as root, --overlay naive (copies of the root, diffed)
#   unaive    as the user, --overlay naive
# and prints every run, the medians, the ratio rootless/root (target
# <= 1.2) and the fallbacks' costs as ratios to root's native overlay.
# Then the same for bench/build.sh's two-stage Dockerfile (the Debian
# base of $LAYERCOMMIT_DEBIAN_TAR, docker-imported and saved to a
# docker-archive; COPY of the Go source tree, a RUN reading it, a stage
# with useradd and two COPYs), root, rootless and fuse (naive copies of a
# Debian root per step take minutes: --naive-ci adds them).
set -euo pipefail

runs=3
files=2000
naive_ci=
while [ $# -gt 0 ]; do
	case $1 in
	-n) runs=$2; shift 2 ;;
	--files) files=$2; shift 2 ;;
	--naive-ci) naive_ci=1; shift ;;
	*) echo "usage: bench/rootless.sh [-n RUNS] [--files N] [--naive-ci]" >&2; exit 2 ;;
	esac
done
case $runs in '' | *[!0-9]* | 0) echo "bench/rootless.sh: -n wants a positive number" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "bench/rootless.sh: run as root (it makes the ordinary user)" >&2; exit 2; }

cd "$(dirname "$0")/.."
# shellcheck source=/dev/null
. scripts/oracles.sh
oracles_up >/dev/null
docker() { /usr/bin/docker -H "$LAYERCOMMIT_DOCKER_HOST" "$@"; }

user=lcbench$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
sub=$(( (1 << 20) + (RANDOM % 15000) * 65536 ))
# shellcheck source=/dev/null
. bench/lib.sh
top=$(mktemp -d /tmp/layercommit-bench-rootless.XXXXXX)
trap 'bench_umount_fs; rm -rf "$top"; userdel --remove --force "$user" >/dev/null 2>&1 || true' EXIT
chmod 755 "$top"
# Every run's files on a journaled ext4 (lib.sh's bench_journaled_fs):
# each run removes the state dir before the next build, which on this
# machine's journal-less root fs would slow the next build's file creation.
bench_journaled_fs "$top/fs"
work=$top/fs
chmod 755 "$work"
useradd --create-home --user-group -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 "$user"
usermod --add-subuids "$sub-$((sub + 65535))" --add-subgids "$sub-$((sub + 65535))" "$user"
home=$(getent passwd "$user" | cut -d: -f6)
as_user() { setpriv --reuid="$user" --regid="$user" --init-groups env -i HOME="$home" PATH=/usr/bin:/bin:/usr/sbin:/sbin "$@"; }

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
chmod -R a+rX "$work"
uwork=$work/user
mkdir -p "$uwork"
chown "$user:$user" "$uwork"

# The CI scenario: bench/build.sh's Dockerfile over the Debian base.
docker import "$LAYERCOMMIT_DEBIAN_TAR" lc-bench-rootless-debian:bookworm >/dev/null
docker save -o "$work/debian.tar" lc-bench-rootless-debian:bookworm
docker rmi lc-bench-rootless-debian:bookworm >/dev/null
cictx=$work/cictx
mkdir -p "$cictx"
cp -a "$(go env GOROOT)/src" "$cictx/src"
echo config >"$cictx/app.conf"
cat >"$cictx/Dockerfile" <<'DF'
FROM debian AS build
COPY src/ /src/
RUN find /src -type f -exec cat {} + | wc -c > /count
FROM debian
RUN useradd -m -u 1000 app
COPY --from=build /count /count
COPY app.conf /etc/app.conf
DF
chmod -R a+rX "$work"

build() { # build MODE CMD...: CMD build of $bctx with --overlay MODE
	local mode=$1
	shift
	"$@" build -q --no-cache --network none --overlay "$mode" --state-dir "$state" \
		--build-context "$bname=docker-archive:$btar" -o "oci:$out" "$bctx" >/dev/null
}
timed() { # timed VAR CMD...: runs CMD, sets VAR to its seconds
	local v=$1 t0 t1
	shift
	sync
	t0=$(bench_now)
	"$@"
	t1=$(bench_now)
	printf -v "$v" '%s' "$(echo "$t1 - $t0" | bc)"
}
# scenario NAME NAIVE: the runs over $bctx; naive ones only when NAIVE.
scenario() {
	local name=$1 naive=$2 r a b c d e
	local -a troot=() tu=() tfuse=() tnaive=() tunaive=()
	echo "$name:"
	for r in $(seq 1 "$runs"); do
		state=$work/state-$r out=$work/out-$r
		timed a build native "$work/layercommit"
		rm -rf "$state" "$out"
		state=$uwork/state-$r out=$uwork/out-$r
		timed b build native as_user "$work/layercommit"
		rm -rf "$state" "$out" # as root: files of subordinate ids are there
		state=$work/state-f$r out=$work/out-f$r
		timed c build fuse "$work/layercommit"
		rm -rf "$state" "$out"
		d=0 e=0
		if [ -n "$naive" ]; then
			state=$work/state-n$r out=$work/out-n$r
			timed d build naive "$work/layercommit"
			rm -rf "$state" "$out"
			state=$uwork/state-n$r out=$uwork/out-n$r
			timed e build naive as_user "$work/layercommit"
			rm -rf "$state" "$out" # as root: files of subordinate ids are there
		fi
		troot[r]=$a tu[r]=$b tfuse[r]=$c tnaive[r]=$d tunaive[r]=$e
		printf 'run %d: root %.2fs  rootless %.2fs  fuse %.2fs' "$r" "$a" "$b" "$c"
		if [ -n "$naive" ]; then printf '  naive %.2fs  rootless naive %.2fs' "$d" "$e"; fi
		echo
	done
	local mr mu mf mn mun
	mr=$(printf '%s\n' "${troot[@]}" | bench_median)
	mu=$(printf '%s\n' "${tu[@]}" | bench_median)
	mf=$(printf '%s\n' "${tfuse[@]}" | bench_median)
	mn=$(printf '%s\n' "${tnaive[@]}" | bench_median)
	mun=$(printf '%s\n' "${tunaive[@]}" | bench_median)
	printf 'median: root %.2fs  rootless %.2fs  fuse %.2fs' "$mr" "$mu" "$mf"
	if [ -n "$naive" ]; then printf '  naive %.2fs  rootless naive %.2fs' "$mn" "$mun"; fi
	echo
	printf 'ratio rootless/root %.2f (target <= 1.2)\n' "$(echo "$mu / $mr" | bc -l)"
	printf 'fallback cost: fuse-overlayfs/native %.2f' "$(echo "$mf / $mr" | bc -l)"
	if [ -n "$naive" ]; then
		printf ', naive/native %.2f (root), rootless naive/rootless native %.2f' \
			"$(echo "$mn / $mr" | bc -l)" "$(echo "$mun / $mu" | bc -l)"
	fi
	echo
}
bctx=$ctx bname=$LAYERCOMMIT_BASE_IMAGE btar=$work/base.tar scenario "small files on busybox" 1
bctx=$cictx bname=debian btar=$work/debian.tar scenario "bench/build.sh's Dockerfile on Debian" "$naive_ci"
