#!/usr/bin/env bash
# The layering rule of DESIGN.md, checked on the sources' #include lines:
#   runtime/ (the core, not runtime/ops) includes no backend: no kernels/ header;
#   kernels/ includes neither the op layer (runtime/ops) nor the tensor core
#   (tensor.h: kernels take plain pointers, sizes and strides), and a backend
#   includes no other backend's files.
# Run from the repository root: bash tests/layering/check_layers.sh [FILE...]
# (with files, only those are checked). Prints each breach; exit 1 if any.
set -u
cd "$(dirname "$0")/../.."
kernel_headers=$(cd kernels && ls *.h 2>/dev/null | tr '\n' ' ')
ops_headers=$(cd runtime/ops && ls *.h 2>/dev/null | tr '\n' ' ')
if [ $# -gt 0 ]; then files=("$@"); else
  mapfile -t files < <(ls runtime/*.c runtime/*.h kernels/*.h kernels/cpu/*.c kernels/cpu/*.h kernels/cuda/*.cu kernels/cuda/*.h kernels/cuda/*.cuh 2>/dev/null)
fi
bad=0
breach() { echo "$1:$2: includes \"$3\": $4"; bad=1; }
for f in "${files[@]}"; do
  while IFS=: read -r line inc; do
    name=${inc##*/}
    case $f in
      runtime/ops/*) ;;
      runtime/*)
        for h in $kernel_headers; do [ "$name" = "$h" ] && breach "$f" "$line" "$inc" "the core must not include a backend's header"; done
        case $inc in *kernels/*|cpu/*|cuda/*) breach "$f" "$line" "$inc" "the core must not include a backend's header";; esac ;;
      kernels/*)
        for h in $ops_headers; do [ "$name" = "$h" ] && breach "$f" "$line" "$inc" "kernels must not include the op layer"; done
        case $inc in *ops/*) breach "$f" "$line" "$inc" "kernels must not include the op layer";; esac
        [ "$name" = tensor.h ] && breach "$f" "$line" "$inc" "kernels take plain pointers, not tensor handles"
        case $f in
          kernels/cpu/*) case $inc in *cuda/*) breach "$f" "$line" "$inc" "one backend must not include another";; esac ;;
          kernels/cuda/*) case $inc in *cpu/*) breach "$f" "$line" "$inc" "one backend must not include another";; esac ;;
        esac ;;
    esac
  done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" | sed -E 's/^([0-9]+):[^"]*"([^"]*)".*/\1:\2/')
  # headers reached indirectly count too: a kernel names no tensor handle
  case $f in kernels/*)
    grep -n '\btide_tensor\b' "$f" | head -1 | while IFS=: read -r line _; do
      echo "$f:$line: uses tide_tensor: kernels take plain pointers, not tensor handles"
    done | grep . && bad=1 ;;
  esac
done
exit $bad
