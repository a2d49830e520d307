#!/usr/bin/env bash
# The transfer-gap study of docs/transfer-gap.md, on nmnist-small (T = 10, 12 epochs, binary input,
# batch 32, Adam 1e-3; the trainer's defaults otherwise):
#   norm {BatchNorm in training mode (conv-bn), affine norm = frozen BN (conv --bn affine), none}
#   x pool {avg, max} x k {1, 2} x rho {0 baseline, 0.1, 0.3} x seeds {0, 1, 2}  = 108 training runs,
# every run with threshold calibration, every BatchNorm run with hard-mode BN re-estimation; one sweep
# folder per cell, then one report over all of them. Resumable: rerun the same command to finish.
# Took 2 h 53 min with JOBS=2 on 2 CPU cores shared with other jobs (docs/transfer-gap.md).
#
#   examples/gap_study.sh [OUT=runs/gap-study] [JOBS=2]
set -euo pipefail
OUT=${1:-runs/gap-study}
JOBS=${2:-2}
PY=${PYTHON:-.venv/bin/python}
# one thread per run: CPU results are bitwise reproducible only with the same thread count
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

for norm in bn-train affine none; do
  case $norm in
    bn-train) net="--preset conv-bn";         controls=calibration,bn-reestimation ;;
    affine)   net="--preset conv --bn affine"; controls=calibration ;;
    none)     net="--preset conv --bn none";   controls=calibration ;;
  esac
  for pool in avg max; do
    for k in 1 2; do
      "$PY" -m sast_deploy.sweep --dataset nmnist-small --rho 0,0.1,0.3 --seeds 0,1,2 --epochs 12 \
        --controls "$controls" --eval-extras none --train-args="$net --pool $pool --k $k" \
        --jobs "$JOBS" --out "$OUT/$norm-$pool-k$k"
    done
  done
done
"$PY" -m sast_deploy.report "$OUT" --by bn,pool,k
