#!/usr/bin/env bash
# One command for a lent GPU machine: environment, CUDA checks, throughput, then training from
# the shipped weights, within 9 minutes of wall time; everything lands in $OUT (docs/gpu.md).
#
#   OUT=dir bash benchmarks/gpu_burst.sh                       # on the GPU machine
#   GPU_BURST_DRY_RUN=1 OUT=dir bash benchmarks/gpu_burst.sh   # every step on the CPU, tiny sizes
#
# It uses the machine's own python3 ($PYTHON to choose another) and runs inpaintkit from this
# tree through PYTHONPATH: nothing is installed, no registry is needed. The Python side
# (benchmarks/gpu_burst/) enforces each step's budget; the timeout below is only a backstop
# that stops the runner itself if it ever hangs past the limit.
set -u
: "${OUT:?set OUT to the folder the results go to}"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$ROOT:$ROOT/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
cd "$ROOT" || exit 1
exec timeout --kill-after=10 550 "$PYTHON" -m gpu_burst run --out "$OUT"
