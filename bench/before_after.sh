#!/usr/bin/env bash
# Two builds of tide on the same machine in the same run, for a change that
# must not cost speed (issue 10's op layer: small-op overhead within 5%,
# training step within 2%). Each round runs OLD then NEW on
# bench/tensor_ops.lua (one section) and bench/train_step.lua; per figure the
# best over rounds counts, so drift and a cold first run hit both alike.
#   bench/before_after.sh OLD_TIDE NEW_TIDE [rounds] [section]
# section: overhead (default), bandwidth or matmul. Prints one line per figure:
# old, new and new/old (time ratios: below 1 is faster; tokens/s: above 1).
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1 new=$2 rounds=${3:-5} section=${4:-overhead}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for r in $(seq "$rounds"); do
  for side in old new; do
    bin=$old; [ "$side" = new ] && bin=$new
    "$bin" bench/tensor_ops.lua --quick --only="$section" >>"$tmp/$side.ops"
    "$bin" bench/train_step.lua --threads=2 >>"$tmp/$side.step"
  done
done
# figure lines: "label ... N ns" (overhead) or "label bytes best median ..." (bandwidth/matmul: best time)
best() {  # file -> "label<TAB>best" per figure (minimum over rounds)
  awk '
    /[0-9.]+ ns$/ { v = $(NF - 1); $NF = ""; $(NF - 1) = ""; key = $0 }
    / ms +[0-9.]+ ms/ && !/^ *op/ { for (i = 1; i <= NF; i++) if ($(i + 1) == "ms") { v = $i; break }
                                    key = $0; sub(/ +[0-9.]+ ms.*/, "", key) }
    key != "" { gsub(/^ +| +$/, "", key); if (!(key in m) || v + 0 < m[key]) m[key] = v + 0; order[key] = NR; key = "" }
    END { for (k in m) printf "%d\t%s\t%s\n", order[k], k, m[k] }' "$1" | sort -n | cut -f2-
}
echo "tensor_ops --only=$section, best of $rounds rounds (time per call or op; lower is better)"
join -t $'\t' <(best "$tmp/old.ops" | sort) <(best "$tmp/new.ops" | sort) |
  awk -F'\t' '{ printf "  %-48s old %10s  new %10s  new/old %.3f\n", $1, $2, $3, ($2 > 0 ? $3 / $2 : 0) }'
tok() { sed -E 's/.* ([0-9]+) tokens\/s.*/\1/' "$1" | sort -n | tail -1; }
to=$(tok "$tmp/old.step") tn=$(tok "$tmp/new.step")
awk -v o="$to" -v n="$tn" -v r="$rounds" 'BEGIN { printf "train_step (best of %d): old %d tokens/s, new %d tokens/s, new/old %.3f\n", r, o, n, n / o }'
