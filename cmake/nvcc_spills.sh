#!/usr/bin/env bash
# The nvcc launcher of tide_engine (CMakeLists.txt): runs the compile command,
# keeps ptxas's -v report beside the object (OBJECT.ptxas.txt), and fails the
# compile when a kernel spills registers to local memory, unless the allow
# file names it (a line: a substring of the demangled name, then `#` and the
# reason; a line without a reason does not count).
# Usage: nvcc_spills.sh ALLOW_FILE COMPILER ARGS...
set -uo pipefail
allow=$1; shift
obj=""
prev=""
for a in "$@"; do
  [ "$prev" = "-o" ] && obj=$a
  prev=$a
done
log=$(mktemp)
"$@" 2>"$log"
rc=$?
# the compiler's own messages pass through; ptxas's per-kernel report stays in the file
grep -v '^ptxas info\|^    [0-9]* bytes stack frame' "$log" >&2
if [ $rc -ne 0 ] || [ -z "$obj" ]; then rm -f "$log"; exit $rc; fi
cp "$log" "$obj.ptxas.txt"
rm -f "$log"
bad=0
fn=""
while IFS= read -r line; do
  case $line in
    *"Function properties for "*) fn=${line##*Function properties for } ;;
    *"bytes spill stores"*)
      stores=$(sed -E 's/.* ([0-9]+) bytes spill stores.*/\1/' <<<"$line")
      loads=$(sed -E 's/.* ([0-9]+) bytes spill loads.*/\1/' <<<"$line")
      if [ "${stores:-0}" != 0 ] || [ "${loads:-0}" != 0 ]; then
        name=$(c++filt "$fn" 2>/dev/null || echo "$fn")
        ok=0
        while IFS= read -r rule; do
          pat=${rule%%#*}; pat=$(echo "$pat" | sed 's/[[:space:]]*$//'); reason=${rule#*#}
          [ -z "$pat" ] || [ "$reason" = "$rule" ] || [ -z "${reason// }" ] && continue
          case $name in *"$pat"*) ok=1 ;; esac
        done < <(grep -v '^[[:space:]]*$' "$allow" 2>/dev/null || true)
        if [ $ok = 0 ]; then
          echo "error: kernel $name spills registers ($stores bytes stored, $loads loaded); fix it or name it with a reason in $allow" >&2
          bad=1
        fi
      fi ;;
  esac
done < "$obj.ptxas.txt"
[ $bad = 0 ] || { rm -f "$obj"; exit 1; }
exit 0
