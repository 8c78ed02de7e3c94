#!/usr/bin/env bash
# Train in the background of a shared machine: lowest priority, in a scheduler autogroup of
# low weight (docs/training.md, "Training in the background on a shared machine"), resumed
# when the run folder already holds a state, started from --init-from otherwise.
#
#   benchmarks/train_background.sh RECIPE DATA RUN_DIR [INIT_GENERATOR] [-- key=value ...]
#
# e.g. benchmarks/train_background.sh default-adversarial ~/.cache/inpaintkit/data/train.h5 \
#          ~/.cache/inpaintkit/runs/adversarial inpaintkit/weights/deepfill_v1.safetensors
# The log goes to RUN_DIR.log; stop the run with `kill -INT PID` (it saves, then exits 130).
set -euo pipefail
if [[ $# -lt 3 ]]; then
    sed -n '2,10p' "$0" >&2
    exit 2
fi
recipe=$1 data=$2 run=$3
shift 3
init=""
if [[ $# -gt 0 && $1 != "--" ]]; then
    init=$1
    shift
fi
[[ ${1:-} == "--" ]] && shift
if [[ -f $run/training_state.json ]]; then
    start=(--resume)
elif [[ -n $init ]]; then
    start=(--init-from "$init")
else
    start=()
fi
# The run starts detached, so a missing command would only show in the log: refuse here.
if ! command -v inpaintkit >/dev/null; then
    echo "train_background.sh: no inpaintkit command on PATH (activate the venv first)" >&2
    exit 1
fi
mkdir -p "$(dirname "$run")"
# setsid gives the run a session, hence an autogroup, of its own; its weight is lowered from
# inside (nice alone orders processes only within one autogroup).
setsid bash -c 'echo 19 > /proc/self/autogroup; exec nice -n 19 "$@"' _ \
    inpaintkit train "$recipe" --data "$data" --out "$run" --quiet "${start[@]}" "$@" \
    >>"$run.log" 2>&1 </dev/null &
echo "started pid $! (log: $run.log)"
