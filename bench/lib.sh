# Shared by the bench scripts; source it after `set -euo pipefail`.
#
# bench_args NAME DEFAULT_SRC... -- "$@" parses the common command line:
# -n RUNS (a positive number, default 3), -h/--help (prints the calling
# script's header comment, up to its `set -euo` line) and source dirs
# (default DEFAULT_SRC...). It sets `runs` and the array `srcs`, and cds
# to the repository root (`repo`).
bench_args() {
	local name=$1
	shift
	local defaults=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		defaults+=("$1")
		shift
	done
	[ $# -eq 0 ] || shift
	runs=3
	srcs=()
	while [ $# -gt 0 ]; do
		case $1 in
		-n) runs=$2; shift 2 ;;
		-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
		-*) echo "bench/$name.sh: unknown flag $1" >&2; exit 2 ;;
		*) srcs+=("$1"); shift ;;
		esac
	done
	case $runs in '' | *[!0-9]* | 0) echo "bench/$name.sh: -n wants a positive number" >&2; exit 2 ;; esac
	[ ${#srcs[@]} -gt 0 ] || srcs=("${defaults[@]}")
	repo=$(cd "$(dirname "$0")/.." && pwd)
	cd "$repo"
}

# bench_start_buildkitd DIR REGISTRY starts a private BuildKit v0.34.2
# buildkitd (the binaries beside $LAYERCOMMIT_BUILDCTL) with an empty root
# under DIR on its own socket, REGISTRY as plain http: a fresh CI runner.
# It sets bkpid and bkaddr; bench_stop_buildkitd stops it.
bench_start_buildkitd() {
	local d=$1 reg=$2 bins
	bins=$(dirname "$LAYERCOMMIT_BUILDCTL")
	mkdir -p "$d"
	cat >"$d/buildkitd.toml" <<TOML
[worker.oci]
  enabled = true
  snapshotter = "overlayfs"
  binary = "$(command -v runc)"
[worker.containerd]
  enabled = false
[registry."$reg"]
  http = true
TOML
	"$bins/buildkitd" --config "$d/buildkitd.toml" --root "$d/root" --addr "unix://$d/sock" >"$d/log" 2>&1 &
	bkpid=$!
	bkaddr=unix://$d/sock
	for _ in $(seq 1 100); do
		"$LAYERCOMMIT_BUILDCTL" --addr "$bkaddr" debug workers >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "buildkitd did not start:" >&2
	tail "$d/log" >&2
	return 1
}

bench_stop_buildkitd() {
	if [ -n "${bkpid:-}" ]; then
		kill "$bkpid" 2>/dev/null || true
		wait "$bkpid" 2>/dev/null || true
		bkpid=
	fi
}

# bench_median reads numbers, one a line, and prints their median.
bench_median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

bench_now() { date +%s.%N; }

# bench_journaled_fs DIR mounts a fresh ext4 at DIR (a sparse 40 GiB file
# DIR.img beside it, made with mkfs.ext4's defaults, so with a journal)
# and sets bench_fs=DIR; bench_umount_fs undoes it. The benches that
# create and delete tens of thousands of files run every tool on it: this
# kind of machine mounts its root ext4 without a journal, and ext4
# without one skips, at every inode allocation, each inode freed in the
# last 60 s (360 s while its inode-table block is dirty) by scanning the
# bitmap one recently_deleted() check at a time. A build that follows
# another tool's deletion of a source tree then spends seconds of system
# time in openat(O_CREAT) (measured: cp -a of the Go tree 0.7 s on a
# journaled ext4, 6.5-8.4 s on the root fs right after an rm -rf of
# another copy), so each tool would be timed with the previous one's
# cleanup. CI runners' disks (ext4, xfs) have journals.
bench_journaled_fs() {
	local d=$1
	mkdir -p "$d"
	truncate -s 40G "$d.img"
	mkfs.ext4 -q -F "$d.img"
	mount -o loop "$d.img" "$d"
	bench_fs=$d
}

bench_umount_fs() {
	if [ -n "${bench_fs:-}" ]; then
		umount -R "$bench_fs" 2>/dev/null || umount -l "$bench_fs" 2>/dev/null || true
		rm -f "$bench_fs.img"
		rmdir "$bench_fs" 2>/dev/null || true
		bench_fs=
	fi
}
