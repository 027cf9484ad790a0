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

step "1/7 train the digits CNN ($CONFIG)"
"$BIN/effrep" train "$CONFIG" run.out="$OUT/train" run.threads=2

step "2/7 2D loss-landscape scan of the trained model on $NP MPI ranks"
"$BIN/mpiexec" -n "$NP" "$PY" -m mpi4py -m effrep_hpc.cli landscape "$CONFIG" \
    run.out="$OUT/train" run.threads=1 landscape.surface="$OUT/landscape/surface.h5"

step "3/7 figures and ParaView files from the surface file"
"$PY" -m analysis contour "$OUT/landscape/surface.h5" --out "$OUT/figures"
"$PY" -m analysis render "$OUT/landscape/surface.h5" --out "$OUT/figures" --log --contours 12 --cmap coolwarm
"$PY" -m analysis vtk "$OUT/landscape/surface.h5" --out "$OUT/figures" --zmax 10 --log

step "4/7 curvature: Hessian eigenvalues, trace and density at the minimum; an 11x11 convexity map on $NP MPI ranks"
"$BIN/effrep" hessian "$CONFIG" run.out="$OUT/train" run.threads=2 hessian.train_size=512 hessian.trace_tol=0.05 \
    hessian.out="$OUT/curvature/hessian.json"
"$BIN/mpiexec" -n "$NP" "$PY" -m mpi4py -m effrep_hpc.cli curvature "$CONFIG" run.out="$OUT/train" run.threads=1 \
    hessian.train_size=128 landscape.x=-1:1:11 landscape.y=-1:1:11 hessian.map="$OUT/curvature/curvature.h5"
"$PY" -m analysis convexity "$OUT/curvature/curvature.h5" --out "$OUT/figures"
"$PY" -m analysis spectrum "$OUT/curvature/hessian.json" --out "$OUT/figures"

step "5/7 optimizer trajectory: PCA of the 31 kept epochs, the loss on their plane on $NP MPI ranks, the path drawn on it"
"$BIN/mpiexec" -n "$NP" "$PY" -m mpi4py -m effrep_hpc.cli trajectory "$CONFIG" run.out="$OUT/train" run.threads=1 \
    landscape.x=-1:1:21 landscape.y=-1:1:21 trajectory.surface="$OUT/trajectory/trajectory.h5" \
    trajectory.direction_file="$OUT/trajectory/directions.h5" trajectory.export="$OUT/trajectory/directions_original.h5"
"$PY" -m analysis trajectory "$OUT/trajectory/trajectory.h5" --out "$OUT/figures"
"$PY" -m analysis vtk "$OUT/trajectory/trajectory.h5" --out "$OUT/figures" --zmax 10 --log

step "6/7 filter pruning: sensitivity on $NP ranks, prune and retrain, speed-up (scripts/demo_prune.sh)"
OUT="$OUT" NP="$NP" PY="$PY" bash scripts/demo_prune.sh

step "7/7 quantized training: FP vs BinaryConnect vs stochastic rounding at 1 bit on $NP ranks (scripts/demo_quant.sh)"
OUT="$OUT" NP="$NP" PY="$PY" bash scripts/demo_quant.sh

printf '\ndemo finished in %ss; outputs under %s\n' "$(( $(date +%s) - start ))" "$OUT"
