#!/usr/bin/env bash
# Installs and starts the real peers the tests compare against: a private
# dockerd (Debian's docker.io 20.10, overlay2) with a busybox base image,
# Docker 29 and BuildKit (built by scripts/engines.sh), a loopback
# registry holding the busybox base for BuildKit, and the tools skopeo,
# umoci and attr, and a Debian bookworm minbase tarball (mmdebstrap).
# Source it: it exports the variables the tests read
# (LAYERCOMMIT_DOCKER_HOST, LAYERCOMMIT_DOCKER_ROOT, LAYERCOMMIT_DOCKER_BIN,
# LAYERCOMMIT_BASE_IMAGE, LAYERCOMMIT_DOCKER29_*, LAYERCOMMIT_BUILDKIT_*,
# LAYERCOMMIT_DEBIAN_TAR)
# and defines oracles_stop. Nothing here reaches beyond Debian's package
# mirror and the Go module proxy.
set -u

LC_ORACLE_DIR=${LC_ORACLE_DIR:-/tmp/layercommit-oracle}
LC_PACKAGES="docker.io busybox-static attr skopeo umoci docker-registry podman runc slirp4netns buildah mmdebstrap uidmap fuse-overlayfs containerd"
# The loopback registry BuildKit pulls its bases from.
LC_REGISTRY_ADDR=${LC_REGISTRY_ADDR:-127.0.0.1:5077}

oracles_install() {
	local missing=()
	command -v dockerd >/dev/null || missing+=(docker.io)
	[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || missing+=(busybox-static)
	command -v setfattr >/dev/null || missing+=(attr)
	command -v skopeo >/dev/null || missing+=(skopeo)
	command -v umoci >/dev/null || missing+=(umoci)
	command -v docker-registry >/dev/null || missing+=(docker-registry)
	command -v podman >/dev/null || missing+=(podman)
	command -v runc >/dev/null || missing+=(runc)
	command -v slirp4netns >/dev/null || missing+=(slirp4netns)
	command -v buildah >/dev/null || missing+=(buildah)
	command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
	command -v newuidmap >/dev/null || missing+=(uidmap)
	command -v fuse-overlayfs >/dev/null || missing+=(fuse-overlayfs)
	command -v ctr >/dev/null || missing+=(containerd)
	if [ ${#missing[@]} -gt 0 ]; then
		echo "oracles: installing ${missing[*]}" >&2
		apt-get update -qq >&2 || return 1
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $LC_PACKAGES >&2 || return 1
	fi
}

oracles_start_dockerd() {
	local dir=$LC_ORACLE_DIR sock=$LC_ORACLE_DIR/docker.sock
	mkdir -p "$dir/root" "$dir/exec"
	export LAYERCOMMIT_DOCKER_HOST=unix://$sock
	export LAYERCOMMIT_DOCKER_ROOT=$dir/root
	export LAYERCOMMIT_DOCKER_BIN=/usr/bin/docker
	if [ -S "$sock" ] && /usr/bin/docker -H "$LAYERCOMMIT_DOCKER_HOST" version >/dev/null 2>&1; then
		return 0
	fi
	# containerd comes with docker.io; dockerd starts its own when given
	# none, keeping its state under the exec root.
	LC_STARTED_DOCKERD=1
	/usr/sbin/dockerd --data-root "$dir/root" --exec-root "$dir/exec" -H "$LAYERCOMMIT_DOCKER_HOST" \
		--pidfile "$dir/docker.pid" --iptables=false --ip6tables=false --bridge=none \
		--storage-driver=overlay2 >"$dir/dockerd.log" 2>&1 &
	local i
	for i in $(seq 1 60); do
		if /usr/bin/docker -H "$LAYERCOMMIT_DOCKER_HOST" version >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.5
	done
	echo "oracles: dockerd did not start; its log:" >&2
	tail -20 "$dir/dockerd.log" >&2
	return 1
}

# oracles_base_image imports a busybox-static rootfs as the base image.
oracles_base_image() {
	export LAYERCOMMIT_BASE_IMAGE=layercommit-base:busybox
	local d=/usr/bin/docker
	if $d -H "$LAYERCOMMIT_DOCKER_HOST" image inspect "$LAYERCOMMIT_BASE_IMAGE" >/dev/null 2>&1; then
		return 0
	fi
	local rootfs
	rootfs=$(mktemp -d)
	mkdir -p "$rootfs"/{bin,etc,tmp,data,root,var}
	cp "$(command -v busybox)" "$rootfs/bin/busybox"
	local a
	for a in sh ls cat echo mkdir rm mv cp ln touch chmod chown mknod mkfifo stat find sleep true false \
		printf head dd sync id env seq tr sed xargs truncate; do
		ln -s busybox "$rootfs/bin/$a"
	done
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
	echo 'base file' >"$rootfs/data/basefile"
	tar -C "$rootfs" -c . | $d -H "$LAYERCOMMIT_DOCKER_HOST" import - "$LAYERCOMMIT_BASE_IMAGE" >/dev/null
	local rc=$?
	rm -rf "$rootfs"
	return $rc
}

# _oracles_docker29 NAME VAR CONFIG WHAT starts a Docker 29.7.1 with
# containerd 2.3.3 (built once per machine by scripts/engines.sh) with the
# daemon.json CONFIG on its own data root, exec root and socket under
# $LC_ORACLE_DIR/NAME, exports LAYERCOMMIT_<VAR>_HOST and _ROOT, sets
# LC_STARTED_<VAR> when it started it, and loads the busybox base into it
# from the 20.10 daemon. Debian's runc runs it with time namespaces off.
_oracles_docker29() {
	local name=$1 var=$2 config=$3 what=$4
	local dir=$LC_ORACLE_DIR/$name sock=$LC_ORACLE_DIR/$name/docker.sock bins host
	. "$(dirname "${BASH_SOURCE[0]}")/engines.sh"
	bins=$(engines_docker29) || return 1
	mkdir -p "$dir/root" "$dir/exec"
	host=unix://$sock
	export "LAYERCOMMIT_${var}_HOST=$host" "LAYERCOMMIT_${var}_ROOT=$dir/root"
	export LAYERCOMMIT_CONTAINERD2_BIN=${bins#*:}
	if [ -S "$sock" ] && /usr/bin/docker -H "$host" version >/dev/null 2>&1; then
		return 0
	fi
	printf '%s\n' "$config" >"$dir/daemon.json"
	eval "LC_STARTED_${var}=1"
	PATH=$bins:$PATH dockerd --config-file "$dir/daemon.json" --data-root "$dir/root" --exec-root "$dir/exec" \
		-H "$host" --pidfile "$dir/docker.pid" --iptables=false --ip6tables=false \
		--bridge=none --userland-proxy=false >"$dir/dockerd.log" 2>&1 &
	local i
	for i in $(seq 1 120); do
		if /usr/bin/docker -H "$host" version >/dev/null 2>&1; then
			/usr/bin/docker -H "$LAYERCOMMIT_DOCKER_HOST" save "$LAYERCOMMIT_BASE_IMAGE" |
				/usr/bin/docker -H "$host" load -q >/dev/null
			return
		fi
		sleep 0.5
	done
	echo "oracles: $what did not start; its log:" >&2
	tail -20 "$dir/dockerd.log" >&2
	return 1
}

# oracles_start_docker29 starts Docker 29 in graphdriver mode (overlay2,
# containerd-snapshotter off): LAYERCOMMIT_DOCKER29_HOST and _ROOT.
oracles_start_docker29() {
	_oracles_docker29 docker29 DOCKER29 \
		'{"features":{"time-namespaces":false,"containerd-snapshotter":false},"storage-driver":"overlay2"}' "dockerd 29"
}

# oracles_start_docker29c starts a second Docker 29 in its default mode
# since 29: the containerd image store (containerd-snapshotter on), with
# the containerd 2.3.3 it supervises under its data root
# (<root>/containerd/daemon) and exec root: LAYERCOMMIT_DOCKER29C_HOST and
# _ROOT. Both export LAYERCOMMIT_CONTAINERD2_BIN, the dir of the built
# containerd 2.3.3 and its ctr (tests start private containerds from it).
oracles_start_docker29c() {
	_oracles_docker29 docker29c DOCKER29C \
		'{"features":{"time-namespaces":false,"containerd-snapshotter":true}}' "dockerd 29 (containerd store)"
}

# oracles_start_registry starts Debian's docker-registry on
# $LC_REGISTRY_ADDR (plain http, loopback only) and pushes the busybox base
# of the 20.10 daemon into it with skopeo, for BuildKit, which pulls its
# bases from a registry (never from Docker Hub).
oracles_start_registry() {
	local dir=$LC_ORACLE_DIR/registry
	mkdir -p "$dir/data"
	export LAYERCOMMIT_REGISTRY=$LC_REGISTRY_ADDR
	export LAYERCOMMIT_BUILDKIT_BASE=$LC_REGISTRY_ADDR/layercommit-base:busybox
	if ! curl -fsS "http://$LC_REGISTRY_ADDR/v2/" >/dev/null 2>&1; then
		cat >"$dir/config.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $dir/data
http:
  addr: $LC_REGISTRY_ADDR
YML
		LC_STARTED_REGISTRY=1
		docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
		echo $! >"$dir/registry.pid"
		local i ok=
		for i in $(seq 1 60); do
			if curl -fsS "http://$LC_REGISTRY_ADDR/v2/" >/dev/null 2>&1; then
				ok=1
				break
			fi
			sleep 0.25
		done
		if [ -z "$ok" ]; then
			echo "oracles: docker-registry did not start; its log:" >&2
			tail -20 "$dir/registry.log" >&2
			return 1
		fi
	fi
	skopeo inspect --tls-verify=false "docker://$LAYERCOMMIT_BUILDKIT_BASE" >/dev/null 2>&1 && return 0
	skopeo copy -q --src-daemon-host "$LAYERCOMMIT_DOCKER_HOST" --dest-tls-verify=false \
		"docker-daemon:$LAYERCOMMIT_BASE_IMAGE" "docker://$LAYERCOMMIT_BUILDKIT_BASE" >&2
}

# oracles_start_buildkit starts BuildKit v0.34.2 (built once per machine
# by scripts/engines.sh) as root: the OCI worker with Debian's runc and the
# overlayfs snapshotter, the containerd worker off, its root and socket
# under $LC_ORACLE_DIR/buildkit, the loopback registry as plain http. It
# exports LAYERCOMMIT_BUILDKIT_HOST and LAYERCOMMIT_BUILDCTL.
oracles_start_buildkit() {
	local dir=$LC_ORACLE_DIR/buildkit bins
	. "$(dirname "${BASH_SOURCE[0]}")/engines.sh"
	bins=$(engines_buildkit) || return 1
	mkdir -p "$dir/root"
	export LAYERCOMMIT_BUILDKIT_HOST=unix://$dir/buildkitd.sock
	export LAYERCOMMIT_BUILDCTL=$bins/buildctl
	if "$LAYERCOMMIT_BUILDCTL" --addr "$LAYERCOMMIT_BUILDKIT_HOST" debug workers >/dev/null 2>&1; then
		return 0
	fi
	cat >"$dir/buildkitd.toml" <<TOML
[worker.oci]
  enabled = true
  snapshotter = "overlayfs"
  binary = "$(command -v runc)"
[worker.containerd]
  enabled = false
[registry."$LC_REGISTRY_ADDR"]
  http = true
TOML
	LC_STARTED_BUILDKIT=1
	"$bins/buildkitd" --config "$dir/buildkitd.toml" --root "$dir/root" --addr "$LAYERCOMMIT_BUILDKIT_HOST" \
		>"$dir/buildkitd.log" 2>&1 &
	echo $! >"$dir/buildkitd.pid"
	local i
	for i in $(seq 1 120); do
		if "$LAYERCOMMIT_BUILDCTL" --addr "$LAYERCOMMIT_BUILDKIT_HOST" debug workers >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.5
	done
	echo "oracles: buildkitd did not start; its log:" >&2
	tail -20 "$dir/buildkitd.log" >&2
	return 1
}

# oracles_debian_base makes a real Debian base once per machine:
# `mmdebstrap --variant=minbase bookworm` (Debian's mirror only, about 30 s)
# into $LC_ENGINES/debian-bookworm-minbase.tar, a plain rootfs tarball, and
# exports LAYERCOMMIT_DEBIAN_TAR. Tests and benches import it where they
# need it (docker import, skopeo); nothing is loaded here.
oracles_debian_base() {
	local dir=${LC_ENGINES:-/var/cache/layercommit-engines} tar
	tar=$dir/debian-bookworm-minbase.tar
	export LAYERCOMMIT_DEBIAN_TAR=$tar
	[ -s "$tar" ] && return 0
	mkdir -p "$dir"
	# One mmdebstrap per machine: concurrent callers (two shells starting
	# the oracles at once) wait for the first one's tarball instead of
	# writing the same temp file.
	(
		flock 9
		[ -s "$tar" ] && exit 0
		echo "oracles: mmdebstrap --variant=minbase bookworm" >&2
		if ! nice -n 19 mmdebstrap --quiet --variant=minbase --format=tar bookworm "$tar.tmp" >&2; then
			rm -f "$tar.tmp"
			echo "oracles: mmdebstrap failed" >&2
			exit 1
		fi
		mv "$tar.tmp" "$tar"
	) 9>"$dir/.debian-bookworm-minbase.lock"
}

# _oracles_kill PIDFILE stops the daemon whose pid is in PIDFILE and waits
# for it to remove the file.
_oracles_kill() {
	local pidfile=$1
	if [ -f "$pidfile" ]; then
		kill "$(cat "$pidfile")" 2>/dev/null
		local i
		for i in $(seq 1 40); do
			[ -f "$pidfile" ] || break
			sleep 0.25
		done
	fi
}

# _oracles_kill_pid PIDFILE stops the process whose pid this shell wrote
# into PIDFILE (buildkitd and docker-registry keep none themselves), waits
# for it to exit and removes the file.
_oracles_kill_pid() {
	local pidfile=$1 pid
	[ -f "$pidfile" ] || return 0
	pid=$(cat "$pidfile")
	kill "$pid" 2>/dev/null
	local i
	for i in $(seq 1 40); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.25
	done
	rm -f "$pidfile"
}

# oracles_stop stops the daemons this shell started (one found running is
# left alone).
oracles_stop() {
	[ -z "${LC_STARTED_DOCKERD:-}" ] || _oracles_kill "$LC_ORACLE_DIR/docker.pid"
	[ -z "${LC_STARTED_DOCKER29:-}" ] || _oracles_kill "$LC_ORACLE_DIR/docker29/docker.pid"
	[ -z "${LC_STARTED_DOCKER29C:-}" ] || _oracles_kill "$LC_ORACLE_DIR/docker29c/docker.pid"
	[ -z "${LC_STARTED_BUILDKIT:-}" ] || _oracles_kill_pid "$LC_ORACLE_DIR/buildkit/buildkitd.pid"
	[ -z "${LC_STARTED_REGISTRY:-}" ] || _oracles_kill_pid "$LC_ORACLE_DIR/registry/registry.pid"
}

# oracles_dev_modes gives /dev/fuse and /dev/net/tun mode 0666 when they
# are 0600, as udev's 50-udev-default.rules makes them on a standard
# Debian host (KERNEL=="fuse" and KERNEL=="tun", MODE="0666"): this VM
# has no udev, and without it an ordinary user can run neither
# fuse-overlayfs nor slirp4netns, which the rootless tests run as the
# test user. Idempotent; a missing node is left missing (the tests that
# need it then fail under LAYERCOMMIT_REQUIRE_ORACLES=1).
oracles_dev_modes() {
	local n
	for n in /dev/fuse /dev/net/tun; do
		[ -c "$n" ] || continue
		if [ "$(stat -c %a "$n")" = 600 ]; then
			chmod 0666 "$n" || return 1
		fi
	done
}

oracles_up() {
	oracles_install && oracles_dev_modes && oracles_start_dockerd && oracles_base_image && oracles_start_docker29 && oracles_start_docker29c &&
		oracles_start_registry && oracles_start_buildkit && oracles_debian_base
}
