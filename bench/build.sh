#!/usr/bin/env bash
# bench/build.sh: one two-stage Dockerfile over a real Debian base, built
# and pushed to the loopback registry by BuildKit v0.34.2 (a private
# buildkitd), buildah bud --layers (Debian's 1.28, a private store),
# docker's legacy builder (the shared 20.10 dockerd) and layercommit, in
# one run.
#
#   bench/build.sh [-n RUNS] [SRC_DIR] [--on-root] [--cache-mount-only] [--with-cache-mount] [--mib N]
#
# The context, BuildKit's root, buildah's store and layercommit's state
# dirs are on a fresh journaled ext4 (bench_journaled_fs in lib.sh: this
# machine's root ext4 has no journal, where file creation right after
# another tool's deletions costs seconds); --on-root puts them under /tmp
# on the root fs and uses the shared buildkitd instead. docker's data root
# is the shared dockerd's either way.
#
# The base is $LAYERCOMMIT_DEBIAN_TAR (mmdebstrap minbase bookworm),
# imported once and pushed to $LAYERCOMMIT_REGISTRY with skopeo: every
# builder pulls it from there (never from Docker Hub), once, untimed. The
# context is a copy of SRC_DIR (default the Go source tree, ~157 MB, 11k
# files); the Dockerfile:
#   FROM debian AS build; COPY src/ /src/; RUN cat every file | wc -c
#   FROM debian; RUN useradd; COPY --from=build /count; COPY app.conf
# RUNS times (default 3) each tool is timed, build and push:
#   cold   nothing cached (--no-cache; the base already pulled)
#   warm   the same build again, nothing changed
#   edit   one source file changed (restored afterwards)
#   fresh  a fresh runner importing the registry cache of an identical
#          earlier build: BuildKit a private buildkitd with an empty root
#          (--import-cache type=registry), layercommit an empty state dir
#          (--cache-from type=registry); both checked to run no RUN step.
#          buildah and docker have no such runner here ("-").
# It prints every run, the medians and the ratios to BuildKit (targets for
# layercommit: cold <= 0.6, warm <= 1.0, edit <= 0.7, fresh <= 0.7).
#
# --cache-mount-only runs just bench/build-cache-mount.sh (the warm
# rebuild of a RUN whose cache mount holds a large download, --mib N),
# --with-cache-mount runs it after this scenario.
set -euo pipefail

cache_mount=
mib=300
on_root=
rest=()
while [ $# -gt 0 ]; do
	case $1 in
	--on-root) on_root=1; shift ;;
	--cache-mount-only) cache_mount=only; shift ;;
	--with-cache-mount) cache_mount=after; shift ;;
	--mib) mib=$2; shift 2 ;;
	*) rest+=("$1"); shift ;;
	esac
done
# shellcheck source=/dev/null
. "$(dirname "$0")/lib.sh"
bench_args build "$(go env GOROOT)/src" -- "${rest[@]}"
if [ "$cache_mount" = only ]; then
	exec bench/build-cache-mount.sh -n "$runs" --mib "$mib"
fi
src=${srcs[0]}

# shellcheck source=/dev/null
. scripts/oracles.sh
oracles_up >/dev/null
reg=$LAYERCOMMIT_REGISTRY
repo=$reg/lc-bench-build-$$
base=$reg/lc-bench-debian:bookworm
docker() { /usr/bin/docker -H "$LAYERCOMMIT_DOCKER_HOST" "$@"; }

top=$(mktemp -d /tmp/layercommit-bench-build.XXXXXX)
work=$top
dimages=()
main_bkpid=
cleanup() {
	rc=$?
	bench_stop_buildkitd
	bkpid=$main_bkpid bench_stop_buildkitd
	if [ $rc -ne 0 ]; then tail -n 15 "$work"/*.log >&2 || true; fi
	docker rmi -f "${dimages[@]}" "$repo/docker:img" "$base" >/dev/null 2>&1 || true
	buildah_ rm -a >/dev/null 2>&1 || true
	buildah_ rmi -a -f >/dev/null 2>&1 || true
	umount -R "$work/buildah/root/overlay" 2>/dev/null || true
	bench_umount_fs
	rm -rf "$top"
}
trap cleanup EXIT
if [ -z "$on_root" ]; then
	bench_journaled_fs "$work/fs"
	work=$work/fs
fi
bkhost=$LAYERCOMMIT_BUILDKIT_HOST
if [ -z "$on_root" ]; then
	bench_start_buildkitd "$work/bk-main" "$reg"
	main_bkpid=$bkpid bkhost=$bkaddr bkpid=
fi
go build -o "$work/layercommit" ./cmd/layercommit

# The Debian base, in the loopback registry once per registry.
if ! skopeo inspect --tls-verify=false "docker://$base" >/dev/null 2>&1; then
	docker import "$LAYERCOMMIT_DEBIAN_TAR" lc-bench-debian-import:bookworm >/dev/null
	skopeo copy -q --src-daemon-host "$LAYERCOMMIT_DOCKER_HOST" --dest-tls-verify=false \
		docker-daemon:lc-bench-debian-import:bookworm "docker://$base"
	docker rmi lc-bench-debian-import:bookworm >/dev/null
fi

ctx=$work/ctx
mkdir -p "$ctx"
cp -a "$src" "$ctx/src"
echo "config" >"$ctx/app.conf"
cat >"$ctx/Dockerfile" <<DF
FROM $base AS build
COPY src/ /src/
RUN find /src -type f -exec cat {} + | wc -c > /count && echo BUILD-RAN
FROM $base
RUN useradd -m -u 1000 app && echo USER-RAN
COPY --from=build /count /count
COPY app.conf /etc/app.conf
DF
edited=$(cd "$ctx" && find src -name '*.go' -type f | sort | sed -n 1p)
cp -p "$ctx/$edited" "$work/edited.orig"

buildah_() {
	TMPDIR=$work/buildah/tmp buildah --root "$work/buildah/root" --runroot "$work/buildah/run" \
		--storage-driver overlay --cgroup-manager cgroupfs "$@"
}
mkdir -p "$work/buildah/tmp"

# build_TOOL [--no-cache]: build and push the image.
build_buildkit() {
	"$LAYERCOMMIT_BUILDCTL" --addr "$bkhost" build --frontend dockerfile.v0 \
		--local context="$ctx" --local dockerfile="$ctx" --progress plain \
		--output "type=image,name=$repo/bk:img,push=true,registry.insecure=true" "$@"
}
build_buildah() {
	buildah_ bud --layers --tls-verify=false --network none --ulimit nofile=1024:1024 \
		--ulimit nproc=4096:4096 -q -t "$repo/buildah:img" "$@" "$ctx"
	buildah_ push -q --tls-verify=false "$repo/buildah:img"
}
build_docker() {
	local id
	id=$(DOCKER_BUILDKIT=0 docker build -q --network none -t "$repo/docker:img" "$@" "$ctx")
	dimages+=("$id")
	docker push "$repo/docker:img"
}
build_layercommit() {
	"$work/layercommit" build --state-dir "$work/lc-state" -t "$repo/lc:img" --push "$@" "$ctx"
}
tools=(buildkit buildah docker layercommit)

# The fresh runners: BuildKit's private buildkitd, layercommit's empty
# state dir, each importing the cache its tool exported.
fresh_buildkit() {
	bench_start_buildkitd "$work/bk-$1" "$reg"
	local t0 t1
	t0=$(bench_now)
	"$LAYERCOMMIT_BUILDCTL" --addr "$bkaddr" build --frontend dockerfile.v0 --local context="$ctx" \
		--local dockerfile="$ctx" --progress plain \
		--output "type=image,name=$repo/bk-fresh:img,push=true,registry.insecure=true" \
		--import-cache "type=registry,ref=$repo/bk:cache,registry.insecure=true" >"$work/fresh-bk-$1.log" 2>&1
	t1=$(bench_now)
	bench_stop_buildkitd
	rm -rf "$work/bk-$1"
	if grep -Eq -- '^#[0-9]+ [0-9.]+ [A-Z]+-RAN$' "$work/fresh-bk-$1.log"; then
		echo "BuildKit's fresh runner $1 ran a RUN step" >&2
		exit 1
	fi
	echo "$t1 - $t0" | bc
}
fresh_layercommit() {
	local t0 t1
	t0=$(bench_now)
	"$work/layercommit" build --state-dir "$work/lc-fresh-$1" -t "$repo/lc-fresh:img" --push \
		--cache-from "type=registry,ref=$repo/lc:cache" "$ctx" >"$work/fresh-lc-$1.out" 2>"$work/fresh-lc-$1.log"
	t1=$(bench_now)
	rm -rf "$work/lc-fresh-$1"
	if grep -q -- '^[A-Z]*-RAN$' "$work/fresh-lc-$1.log"; then
		echo "layercommit's fresh runner $1 ran a RUN step" >&2
		exit 1
	fi
	echo "$t1 - $t0" | bc
}

# Untimed: every tool pulls the base and builds once; BuildKit and
# layercommit export their cache (mode=max) to the registry.
for t in "${tools[@]}"; do
	"build_$t" >"$work/seed-$t.log" 2>&1
done
build_buildkit --export-cache "type=registry,ref=$repo/bk:cache,mode=max,registry.insecure=true" >>"$work/seed-buildkit.log" 2>&1
build_layercommit --cache-to "type=registry,ref=$repo/lc:cache,mode=max" >>"$work/seed-layercommit.log" 2>&1

declare -A times
timed() { # timed TOOL SCENARIO ARGS...: one build of TOOL, its seconds added to times
	local tool=$1 scen=$2 t0 t1
	shift 2
	sync
	t0=$(bench_now)
	"build_$tool" "$@" >"$work/$tool-$scen.log" 2>&1
	t1=$(bench_now)
	times[$tool.$scen]+="$(echo "$t1 - $t0" | bc) "
}
for r in $(seq 1 "$runs"); do
	for t in "${tools[@]}"; do
		timed "$t" cold --no-cache
		timed "$t" warm
	done
	echo "// bench edit $r $$" >>"$ctx/$edited"
	for t in "${tools[@]}"; do
		timed "$t" edit
	done
	for t in buildkit layercommit; do
		if ! grep -q -- 'BUILD-RAN$' "$work/$t-edit.log"; then echo "$t's edit build did not rerun the RUN" >&2; exit 1; fi
	done
	cp -p "$work/edited.orig" "$ctx/$edited"
	sync
	times[buildkit.fresh]+="$(fresh_buildkit "$r") "
	sync
	times[layercommit.fresh]+="$(fresh_layercommit "$r") "
	printf 'run %d:' "$r"
	for t in "${tools[@]}"; do
		printf '  %s' "$t"
		for s in cold warm edit fresh; do
			# shellcheck disable=SC2086
			set -- ${times[$t.$s]:-}
			if [ $# -ge "$r" ]; then eval "printf ' %.2f' \${$r}"; else printf ' -'; fi
		done
	done
	echo
done

med() { # med TOOL SCENARIO
	if [ -z "${times[$1.$2]:-}" ]; then echo -; return; fi
	printf '%s\n' ${times[$1.$2]} | bench_median
}
printf '\nmedians of %d runs, seconds (build and push)\n' "$runs"
printf '%-12s %8s %8s %8s %8s\n' tool cold warm edit fresh
for t in "${tools[@]}"; do
	printf '%-12s' "$t"
	for s in cold warm edit fresh; do
		m=$(med "$t" "$s")
		if [ "$m" = - ]; then printf ' %8s' -; else printf ' %8.2f' "$m"; fi
	done
	echo
done
printf '\nratio to BuildKit\n'
printf '%-12s %8s %8s %8s %8s\n' tool cold warm edit fresh
for t in buildah docker layercommit; do
	printf '%-12s' "$t"
	for s in cold warm edit fresh; do
		m=$(med "$t" "$s")
		b=$(med buildkit "$s")
		if [ "$m" = - ]; then printf ' %8s' -; else printf ' %8.2f' "$(echo "$m / $b" | bc -l)"; fi
	done
	echo
done
echo "layercommit targets: cold <= 0.6, warm <= 1.0, edit <= 0.7, fresh <= 0.7"

if [ "$cache_mount" = after ]; then
	echo "cache-mount scenario:"
	bench/build-cache-mount.sh -n "$runs" --mib "$mib"
fi
