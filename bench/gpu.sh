#!/usr/bin/env bash
# One command for a GPU machine: bench/gpu_check.py on CIFAR-10, about 3-4 minutes on an
# H100/H200 (trainer vs naive loop, packed trainers, memory estimate vs allocator, and the
# per-stage downsample answer with its verdicts).
#
# The data travels inside the checkout, in the git-ignored .bench-data/ folder:
#     cp ../shared/data/cifar10-jpeg.tar.gz .bench-data/
# and the device machine's run tool must carry that path (carry: [".bench-data"]).
# Needs only python3 with torch, numpy, pandas, scipy and Pillow (no Ray, Optuna or SQLAlchemy).
# The output also goes to $OUT/gpu_check.txt when $OUT is set. Extra arguments pass through
# to bench/gpu_check.py (--device, --data, --cache-dir, --smoke).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DATA=.bench-data/cifar10-jpeg.tar.gz
if [ ! -f "$DATA" ] && [[ " $* " != *" --data "* ]]; then
  echo "gpu.sh: $DATA is missing: cp ../shared/data/cifar10-jpeg.tar.gz .bench-data/ and carry .bench-data" >&2
  exit 2
fi
"$PYTHON" -c "import torch, numpy, pandas, scipy, PIL" || {
  echo "gpu.sh: $PYTHON lacks one of torch, numpy, pandas, scipy, Pillow" >&2; exit 2; }
if [ -n "${OUT:-}" ]; then
  "$PYTHON" -u bench/gpu_check.py --data "$DATA" "$@" 2>&1 | tee "$OUT/gpu_check.txt"
else
  exec "$PYTHON" -u bench/gpu_check.py --data "$DATA" "$@"
fi
