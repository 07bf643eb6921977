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
