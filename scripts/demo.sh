#!/usr/bin/env bash
# The demo behind `make demo`: every step is an ordinary effrep command, so it doubles as a tutorial.
# Variables: OUT (output directory, default runs/demo), NP (MPI ranks, default 2), PY (python).
set -euo pipefail
OUT=${OUT:-runs/demo}
NP=${NP:-2}
PY=${PY:-.venv/bin/python}
BIN=$(dirname "$PY")
CONFIG=configs/demo/digits.yaml
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
start=$(date +%s)

step() { printf '\n== %s\n' "$*"; }

step "1/6 train the digits CNN ($CONFIG)"
"$BIN/effrep" train "$CONFIG" run.out="$OUT/train" run.threads=2

step "2/6 2D loss-landscape scan of the trained model on $NP MPI ranks"
"$BIN/mpiexec" -n "$NP" "$PY" -m mpi4py -m effrep_hpc.cli landscape "$CONFIG" \
    run.out="$OUT/train" run.threads=1 landscape.surface="$OUT/landscape/surface.h5"

step "3/6 figures and ParaView files from the surface file"
"$PY" -m analysis contour "$OUT/landscape/surface.h5" --out "$OUT/figures"
"$PY" -m analysis render "$OUT/landscape/surface.h5" --out "$OUT/figures" --log --contours 12 --cmap coolwarm
"$PY" -m analysis vtk "$OUT/landscape/surface.h5" --out "$OUT/figures" --zmax 10 --log

step "4/6 curvature: Hessian eigenvalues, trace and density at the minimum; an 11x11 convexity map on $NP MPI ranks"
"$BIN/effrep" hessian "$CONFIG" run.out="$OUT/train" run.threads=2 hessian.train_size=512 hessian.trace_tol=0.05 \
    hessian.out="$OUT/curvature/hessian.json"
"$BIN/mpiexec" -n "$NP" "$PY" -m mpi4py -m effrep_hpc.cli curvature "$CONFIG" run.out="$OUT/train" run.threads=1 \
    hessian.train_size=128 landscape.x=-1:1:11 landscape.y=-1:1:11 hessian.map="$OUT/curvature/curvature.h5"
"$PY" -m analysis convexity "$OUT/curvature/curvature.h5" --out "$OUT/figures"
"$PY" -m analysis spectrum "$OUT/curvature/hessian.json" --out "$OUT/figures"

step "5/6 filter pruning: sensitivity on $NP ranks, prune and retrain, speed-up (scripts/demo_prune.sh)"
OUT="$OUT" NP="$NP" PY="$PY" bash scripts/demo_prune.sh

step "6/6 quantized training: FP vs BinaryConnect vs stochastic rounding at 1 bit on $NP ranks (scripts/demo_quant.sh)"
OUT="$OUT" NP="$NP" PY="$PY" bash scripts/demo_quant.sh

printf '\ndemo finished in %ss; outputs under %s\n' "$(( $(date +%s) - start ))" "$OUT"
