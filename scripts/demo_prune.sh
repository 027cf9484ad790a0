#!/usr/bin/env bash
# The pruning part of `make demo` (called by scripts/demo.sh, or on its own): filter pruning of a small
# VGG-style CNN on the 8x8 digits, end to end with ordinary effrep commands.
# Variables: OUT (output directory, default runs/demo), NP (MPI ranks, default 2), PY (python).
set -euo pipefail
OUT=${OUT:-runs/demo}
NP=${NP:-2}
PY=${PY:-.venv/bin/python}
BIN=$(dirname "$PY")
CONFIG=configs/demo/prune_digits.yaml
RUN="$OUT/prune"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

step() { printf '\n== %s\n' "$*"; }

step "prune 1/4: train the digits VGG to prune ($CONFIG)"
"$BIN/effrep" train "$CONFIG" run.out="$RUN" run.threads=2

step "prune 2/4: sensitivity scan (6 layers x 9 ratios x smallest/random/largest L1) on $NP MPI ranks"
"$BIN/mpiexec" -n "$NP" "$PY" -m mpi4py -m effrep_hpc.cli prune sensitivity "$CONFIG" \
    run.out="$RUN" run.threads=1 prune.sensitivity="$RUN/sensitivity.h5"
"$PY" -m analysis sensitivity "$RUN/sensitivity.h5" --out "$OUT/figures"

step "prune 3/4: prune about half the FLOPs and retrain (accuracy, FLOPs, params, measured speed-up)"
"$BIN/effrep" prune retrain "$CONFIG" run.out="$RUN" run.threads=1

step "prune 4/4: the same pruned architecture trained from scratch (the paper's baseline)"
"$BIN/effrep" prune scratch "$CONFIG" run.out="$RUN" run.threads=1
