#!/usr/bin/env bash
# cmake/nvcc_spills.sh, the launcher of every nvcc compile: a kernel whose
# ptxas report shows spills fails the compile (and its object is removed)
# unless the allow file names it with a reason; the report is kept beside the
# object. A fake compiler prints ptxas-style reports, so no nvcc is needed.
set -u
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() { if eval "$2"; then :; else echo "FAIL: $1"; fails=$((fails + 1)); fi; }

cat > "$tmp/fakecc" <<'EOS'
#!/usr/bin/env bash
# prints a report for one kernel with $SPILL bytes of spills, writes the -o file
out=""; prev=""
for a in "$@"; do [ "$prev" = -o ] && out=$a; prev=$a; done
echo "ptxas info    : Compiling entry function '_Z9my_kernelPf' for 'sm_90'" >&2
echo "ptxas info    : Function properties for _Z9my_kernelPf" >&2
echo "    16 bytes stack frame, ${SPILL} bytes spill stores, ${SPILL} bytes spill loads" >&2
echo "ptxas info    : Used 255 registers, used 0 barriers" >&2
echo obj > "$out"
EOS
chmod +x "$tmp/fakecc"
: > "$tmp/none.allow"

SPILL=0 bash cmake/nvcc_spills.sh "$tmp/none.allow" "$tmp/fakecc" -c x.cu -o "$tmp/a.o" 2>"$tmp/err"
check "a kernel without spills compiles" "[ $? = 0 ] && [ -f $tmp/a.o ] && grep -q 'Used 255 registers' $tmp/a.o.ptxas.txt"

SPILL=24 bash cmake/nvcc_spills.sh "$tmp/none.allow" "$tmp/fakecc" -c x.cu -o "$tmp/b.o" 2>"$tmp/err"
rc=$?
check "a spilling kernel fails the compile" "[ $rc = 1 ] && [ ! -f $tmp/b.o ]"
check "the error names the kernel and the bytes" "grep -q 'kernel my_kernel(float\*) spills registers (24 bytes stored, 24 loaded)' $tmp/err"

echo 'my_kernel   # no reason given' > "$tmp/noreason.allow"
sed -i 's/# no reason given/#/' "$tmp/noreason.allow"
SPILL=24 bash cmake/nvcc_spills.sh "$tmp/noreason.allow" "$tmp/fakecc" -c x.cu -o "$tmp/c.o" 2>/dev/null; rc=$?
check "an allow line without a reason does not count" "[ $rc = 1 ]"

echo 'my_kernel  # the 255-register tile is worth 24 bytes of spills' > "$tmp/ok.allow"
SPILL=24 bash cmake/nvcc_spills.sh "$tmp/ok.allow" "$tmp/fakecc" -c x.cu -o "$tmp/d.o" 2>/dev/null
check "a kernel allowed with a reason compiles" "[ $? = 0 ] && [ -f $tmp/d.o ]"

[ $fails = 0 ] && echo "spill check: ok" || { echo "$fails failures"; exit 1; }
