#!/usr/bin/env bash
# bench/squash.sh: `layercommit commit --squash` of a ~1 GB base plus a
# small change against writing the merged tree's layer once, and
# --squash's peak RSS.
#
#   bench/squash.sh [-n RUNS] [SRC_DIR...]
#
# It makes a two-layer base (an OCI layout) from SRC_DIRs (default the Go
# tree and the shared libraries, ~930 MB, as bench/diff.sh uses), one
# layer per dir, and a small upper dir over it (a few files, a whiteout of
# the first dir's bin/go). The merged tree (the dirs copied over each
# other, the change applied) is made once with cp -a. The first --squash,
# which unpacks the base's layers into a fresh state dir, is timed on its
# own (cold). Then, RUNS times (default 3):
#   squash   layercommit commit --squash --from oci:BASE --upper CHANGE
#            --state-dir STATE -o oci:DIR    (warm state dir; under /usr/bin/time)
#   merged   layercommit commit --upper MERGED -o oci:DIR
#            (the merged tree's layer written once: walk, tar, pgzip, write)
#   tar      tar -cf - of the merged tree into a pipe (a reference)
# and prints every run, the medians, the ratio squash/merged (target
# <= 1.3) and --squash's peak RSS (target < 128 MiB).
set -euo pipefail

. "$(dirname "$0")/lib.sh"
bench_args squash /usr/local/go /usr/lib/x86_64-linux-gnu -- "$@"
work=$(mktemp -d /tmp/layercommit-bench-squash.XXXXXX)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

echo "building layercommit" >&2
go build -o "$work/layercommit" ./cmd/layercommit
lc=$work/layercommit

echo "making the base and the change" >&2
from=scratch
i=0
for s in "${srcs[@]}"; do
	i=$((i + 1))
	"$lc" commit -q --from "$from" --upper "$s" --created 2024-01-01T00:00:00Z -o "oci:$work/base:l$i" >/dev/null
	from=oci:$work/base:l$i
done
change=$work/change
mkdir -p "$change/bin" "$change/etc/bench"
for f in 1 2 3 4 5; do head -c 100000 /dev/urandom >"$change/etc/bench/file$f"; done
mknod "$change/bin/go" c 0 0
merged=$work/merged
mkdir "$merged"
for s in "${srcs[@]}"; do cp -a "$s/." "$merged/"; done
rm -f "$merged/bin/go"
cp -a "$change/etc" "$merged/"
basebytes=$(du -sb "$work/base/blobs" | cut -f1)
treebytes=$(du -sb --apparent-size "$merged" | cut -f1)
printf 'base: %d layers, %d MiB of blobs; merged tree: %d MiB, %d entries\n' "$i" $((basebytes >> 20)) $((treebytes >> 20)) "$(find "$merged" | wc -l)"
sync

secs() { python3 -c 'import sys; print("%.2f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$@"; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
squash() { "$lc" commit -q --squash --from "$from" --upper "$change" --state-dir "$work/state" -o "oci:$work/out:sq"; }

t0=$(now)
squash >/dev/null
t1=$(now)
rm -rf "$work/out"
printf 'cold --squash (unpacking the base into a fresh state dir): %ss\n' "$(secs "$t0" "$t1")"

: >"$work/sq" >"$work/mg" >"$work/tar" >"$work/rss"
printf '%-4s %9s %9s %7s %8s\n' run squash_s merged_s tar_s rss_MiB
for r in $(seq 1 "$runs"); do
	sync
	t0=$(now)
	/usr/bin/time -f '%M' -o "$work/time" "$lc" commit -q --squash --from "$from" --upper "$change" --state-dir "$work/state" -o "oci:$work/out:sq" >/dev/null
	t1=$(now)
	rm -rf "$work/out"
	sync
	t2=$(now)
	"$lc" commit -q --upper "$merged" -o "oci:$work/out:mg" >/dev/null
	t3=$(now)
	rm -rf "$work/out"
	t4=$(now)
	tar -cf - -C "$merged" . | cat >/dev/null
	t5=$(now)
	s=$(secs "$t0" "$t1") m=$(secs "$t2" "$t3") t=$(secs "$t4" "$t5")
	rss=$(awk '{printf "%.1f", $1/1024}' "$work/time")
	echo "$s" >>"$work/sq"; echo "$m" >>"$work/mg"; echo "$t" >>"$work/tar"; echo "$rss" >>"$work/rss"
	printf '%-4s %9s %9s %7s %8s\n' "$r" "$s" "$m" "$t" "$rss"
done
ms=$(median <"$work/sq") mm=$(median <"$work/mg") mt=$(median <"$work/tar") mr=$(median <"$work/rss")
printf '%-4s %9s %9s %7s %8s\n' med "$ms" "$mm" "$mt" "$mr"
python3 - "$ms" "$mm" "$mr" <<'PY'
import sys
s, m, rss = map(float, sys.argv[1:4])
print(f"--squash / the merged tree's layer written once: {s / m:.2f}x (target <= 1.3)")
print(f"--squash peak RSS (median): {rss:.1f} MiB (target < 128)")
PY
