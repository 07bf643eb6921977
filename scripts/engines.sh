#!/usr/bin/env bash
# Builds the engines that Debian does not package in the versions the
# oracles need, from the Go module proxy, once per machine: each lands in
# $LC_ENGINES/<name>-<version>/bin and a rerun finds it there and builds
# nothing. Source it and call engines_docker29 / engines_buildkit; each
# prints the bin dir on stdout. Nothing here reaches beyond the module
# proxy. Builds run at the lowest CPU priority.
#
#   Docker 29.7.1 (github.com/moby/moby/v2 v2.0.0-beta.21) and the
#   containerd 2.3.3 it ships with: dockerd, containerd,
#   containerd-shim-runc-v2, ctr.
#   BuildKit v0.34.2: buildkitd, buildctl, built through a throwaway
#   wrapper module because `go install` refuses buildkit's exclude
#   directives.
set -u

LC_ENGINES=${LC_ENGINES:-/var/cache/layercommit-engines}
LC_DOCKER29_MODULE=github.com/moby/moby/v2
LC_DOCKER29_VERSION=v2.0.0-beta.21
LC_CONTAINERD2_VERSION=v2.3.3
LC_BUILDKIT_VERSION=v0.34.2

# _engines_locked NAME VERSION FN ARGS... runs FN ARGS holding NAME-VERSION's
# lock, so that concurrent callers (several test shells on one machine)
# wait for the one build instead of starting their own.
_engines_locked() {
	local name=$1 version=$2
	shift 2
	mkdir -p "$LC_ENGINES" || return 1
	(
		flock 9 || exit 1
		"$@"
	) 9>"$LC_ENGINES/.$name-$version.lock"
}

# _engines_install NAME VERSION PKG... installs PKG@VERSION into NAME's bin.
_engines_install() {
	_engines_locked "$1" "$2" _engines_install_locked "$@"
}

_engines_install_locked() {
	local name=$1 version=$2
	shift 2
	local dir=$LC_ENGINES/$name-$version
	if [ -f "$dir/.done" ]; then
		echo "$dir/bin"
		return 0
	fi
	mkdir -p "$dir"
	local tmp
	tmp=$(mktemp -d "$LC_ENGINES/.build-$name-XXXXXX") || return 1
	local p
	for p in "$@"; do
		echo "engines: building $p@$version" >&2
		if ! CGO_ENABLED=0 GOFLAGS=-mod=mod GOBIN=$tmp/bin nice -n 19 go install "$p@$version" >&2; then
			rm -rf "$tmp"
			return 1
		fi
	done
	rm -rf "$dir/bin" && mv "$tmp/bin" "$dir/bin" && rm -rf "$tmp" && touch "$dir/.done" || return 1
	echo "$dir/bin"
}

engines_docker29() {
	local d c
	d=$(_engines_install dockerd "$LC_DOCKER29_VERSION" "$LC_DOCKER29_MODULE/cmd/dockerd") || return 1
	c=$(_engines_install containerd "$LC_CONTAINERD2_VERSION" \
		github.com/containerd/containerd/v2/cmd/containerd \
		github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
		github.com/containerd/containerd/v2/cmd/ctr) || return 1
	echo "$d:$c"
}

engines_buildkit() {
	_engines_locked buildkit "$LC_BUILDKIT_VERSION" _engines_buildkit_locked
}

_engines_buildkit_locked() {
	local dir=$LC_ENGINES/buildkit-$LC_BUILDKIT_VERSION
	if [ -f "$dir/.done" ]; then
		echo "$dir/bin"
		return 0
	fi
	mkdir -p "$LC_ENGINES"
	local tmp
	tmp=$(mktemp -d "$LC_ENGINES/.build-buildkit-XXXXXX") || return 1
	echo "engines: building buildkitd and buildctl $LC_BUILDKIT_VERSION" >&2
	(
		cd "$tmp" &&
			printf 'module layercommit.invalid/buildkit-wrapper\n\ngo 1.24\n' >go.mod &&
			printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "github.com/moby/buildkit/cmd/buildctl"\n\t_ "github.com/moby/buildkit/cmd/buildkitd"\n)\n' >tools.go &&
			GOFLAGS=-mod=mod go get "github.com/moby/buildkit@$LC_BUILDKIT_VERSION" >&2 &&
			GOFLAGS=-mod=mod go mod tidy >&2 &&
			CGO_ENABLED=0 nice -n 19 go build -o bin/buildkitd github.com/moby/buildkit/cmd/buildkitd >&2 &&
			CGO_ENABLED=0 nice -n 19 go build -o bin/buildctl github.com/moby/buildkit/cmd/buildctl >&2
	) || {
		rm -rf "$tmp"
		return 1
	}
	rm -rf "$dir" && mkdir -p "$dir" && mv "$tmp/bin" "$dir/bin" && rm -rf "$tmp" && touch "$dir/.done" || return 1
	echo "$dir/bin"
}
