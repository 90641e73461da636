# Sourced by the cli tests that check tide against Python's packages:
#   source "$(dirname "$0")/ref_python.sh"; ref_python 'import torch, transformers' "torch and transformers"
# sets $py to the first Python that runs the import ($TIDE_REF_PYTHON, the
# venvs tests/ref/README.md makes, then python3), or prints
# `skipped: no WHAT (...)` and exits 77 (ctest's skip).
ref_python() {
  local import=$1 what=$2 c
  py=""
  for c in "${TIDE_REF_PYTHON:-}" /tmp/refenv/bin/python /tmp/torchvenv/bin/python /tmp/tbvenv/bin/python python3; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 && "$c" -c "$import" >/dev/null 2>&1; then py=$c; return 0; fi
  done
  echo "skipped: no $what (no Python here has them: set TIDE_REF_PYTHON; see tests/ref/README.md)"
  exit 77
}
