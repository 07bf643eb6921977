#!/usr/bin/env bash
# bench/compression.sh: `layercommit commit` of one large upper dir with
# each --compression (gzip, zstd, estargz, zstd:chunked, none): wall time,
# throughput, blob size beside gzip and peak RSS.
#
#   bench/compression.sh [-n RUNS] [SRC_DIR...]
#
# The upper dir is a plain copy (cp -a) of SRC_DIRs (default the Go tree
# and the shared libraries, ~1 GB, as bench/commit.sh and bench/diff.sh
# use). Each run commits it onto scratch into a fresh OCI layout under
# /usr/bin/time; RUNS times (default 3) per compression, interleaved.
# It prints every run, the medians (wall and cpu = user+sys), the ratios estargz/gzip and
# zstd:chunked/zstd (target <= 1.5 at the same level), the blob sizes
# against gzip's and the peak RSS (target < 128 MiB).
set -euo pipefail

. "$(dirname "$0")/lib.sh"
bench_args compression /usr/local/go /usr/lib/x86_64-linux-gnu -- "$@"
work=$(mktemp -d /tmp/layercommit-bench-compression.XXXXXX)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

echo "building layercommit" >&2
go build -o "$work/layercommit" ./cmd/layercommit
mkdir -p "$work/upper"
for s in "${srcs[@]}"; do cp -a "$s" "$work/upper/"; done
read -r bytes entries < <(echo "$(du -sb "$work/upper" | cut -f1) $(find "$work/upper" | wc -l)")
echo "upper dir: $((bytes / 1000000)) MB, $entries entries" >&2

comps=(gzip zstd estargz zstd:chunked none)
declare -A times cpus rss size
for i in $(seq 1 "$runs"); do
	for c in "${comps[@]}"; do
		out=$work/out-${c/:/-}
		rm -rf "$out"
		sync
		/usr/bin/time -f '%e %M %U %S' -o "$work/time" "$work/layercommit" commit -q --from scratch \
			--upper "$work/upper" --compression "$c" -o "oci:$out:bench" >/dev/null
		read -r t m u k <"$work/time"
		cpu=$(awk -v u="$u" -v k="$k" 'BEGIN {print u + k}')
		# The layer is the largest blob of the layout.
		s=$(find "$out/blobs" -type f -printf '%s\n' | sort -n | tail -1)
		times[$c]+="$t "
		cpus[$c]+="$cpu "
		rss[$c]+="$m "
		size[$c]=$s
		printf 'run %d %-13s %7.2f s %7.2f cpu s %7d KiB RSS %12d bytes\n' "$i" "$c" "$t" "$cpu" "$m" "$s"
	done
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo
printf '%-13s %9s %9s %9s %12s %9s %9s\n' compression "median s" "MB/s" "cpu s" "blob bytes" "vs gzip" "max RSS"
declare -A med medcpu
for c in "${comps[@]}"; do
	med[$c]=$(echo "${times[$c]}" | median)
	medcpu[$c]=$(echo "${cpus[$c]}" | median)
	maxrss=$(echo "${rss[$c]}" | tr ' ' '\n' | grep . | sort -n | tail -1)
	awk -v c="$c" -v t="${med[$c]}" -v u="${medcpu[$c]}" -v b="$bytes" -v s="${size[$c]}" -v g="${size[gzip]}" -v m="$maxrss" \
		'BEGIN {printf "%-13s %9.2f %9.1f %9.2f %12d %9.3f %6.1f MiB\n", c, t, b/1e6/t, u, s, s/g, m/1024}'
done
echo
awk -v a="${med[estargz]}" -v b="${med[gzip]}" 'BEGIN {printf "estargz / gzip time:      %.2f (target <= 1.5)\n", a/b}'
awk -v a="${med[zstd:chunked]}" -v b="${med[zstd]}" 'BEGIN {printf "zstd:chunked / zstd time: %.2f (target <= 1.5)\n", a/b}'
# CPU time is steadier than wall time on a shared machine; gzip (pgzip)
# and the seekable formats use every core, so the wall ratio is the goal.
awk -v a="${medcpu[estargz]}" -v b="${medcpu[gzip]}" 'BEGIN {printf "estargz / gzip cpu:       %.2f\n", a/b}'
awk -v a="${medcpu[zstd:chunked]}" -v b="${medcpu[zstd]}" 'BEGIN {printf "zstd:chunked / zstd cpu:  %.2f\n", a/b}'
