#!/usr/bin/env bash
# The quantized-training part of `make demo` (scripts/demo.sh calls it; it also runs on its own): a sweep of
# FP, BC and SR at 1 bit with 2 seeds shared by $NP MPI ranks into one HDF5 file, the table of final test
# errors, the figures, and the exact Markov-chain comparison of SR and BC on a noisy quadratic.
# Variables as in scripts/demo.sh: OUT (output directory, default runs/demo), NP (MPI ranks, default 2),
# PY (python). Re-running resumes the sweep: finished runs are not trained again.
set -euo pipefail
OUT=${OUT:-runs/demo}
NP=${NP:-2}
PY=${PY:-.venv/bin/python}
BIN=$(dirname "$PY")
CONFIG=configs/demo/quant_demo.yaml
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

printf '\n== quant 1/3: FP, BC and SR at 1 bit x 2 seeds on %s MPI ranks (%s)\n' "$NP" "$CONFIG"
"$BIN/mpiexec" -n "$NP" "$PY" -m mpi4py -m effrep_hpc.cli quant sweep "$CONFIG" \
    run.out="$OUT/quant" run.threads=1 run.progress=false

printf '\n== quant 2/3: final test error per (algorithm, bits), mean ± std over seeds\n'
"$PY" -m analysis quant-table "$OUT/quant/sweep.h5"
"$PY" -m analysis quant-plots "$OUT/quant/sweep.h5" --out "$OUT/figures/quant"

printf '\n== quant 3/3: exact stationary excess loss E[f] - f* of SR and BC for f = w^2/2, noise +-1, grid 1\n'
"$PY" -m effrep_hpc.cli quant markov --mu 1 --sigma 1 --delta 1 --lr 0.3 0.1 0.03 0.01 0.003 0.001 \
    --plot "$OUT/figures/quant/markov.png"
