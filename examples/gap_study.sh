#!/usr/bin/env bash
# The transfer-gap study of docs/transfer-gap.md, on nmnist-small (T = 10, 12 epochs, binary input,
# batch 32, Adam 1e-3; the trainer's defaults otherwise), one sweep folder per cell:
#   norm {BatchNorm in training mode (conv-bn), affine norm = frozen BN (conv --bn affine), none}
#   x pool {avg, max} x k {1, 2} x seeds {0, 1, 2}
#   BatchNorm cells: rho {0 baseline, 0.1, 0.3}, threshold calibration and hard-mode BN re-estimation
#   affine and none: the baseline only (rho 0), threshold calibration   (the budget; docs/transfer-gap.md)
# = 60 training runs, then one report over all cells and one per cell. Resumable: rerun the same
# command to finish. Took 1 h 56 min (+1 min of reports) with JOBS=2 on 2 CPU cores shared with
# other jobs; the reduction of the grid and why: docs/transfer-gap.md section 5.
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
    bn-train) net="--preset conv-bn";          rho=0,0.1,0.3; controls=calibration,bn-reestimation ;;
    affine)   net="--preset conv --bn affine"; rho=0;         controls=calibration ;;
    none)     net="--preset conv --bn none";   rho=0;         controls=calibration ;;
  esac
  for pool in avg max; do
    for k in 1 2; do
      "$PY" -m sast_deploy.sweep --dataset nmnist-small --rho "$rho" --seeds 0,1,2 --epochs 12 \
        --controls "$controls" --eval-extras none --train-args="$net --pool $pool --k $k" \
        --jobs "$JOBS" --out "$OUT/$norm-$pool-k$k"
    done
  done
done
for cell in "$OUT"/*/; do
  "$PY" -m sast_deploy.report "$cell" > /dev/null
done
"$PY" -m sast_deploy.report "$OUT" --by bn,pool,k
