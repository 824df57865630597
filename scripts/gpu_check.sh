#!/usr/bin/env bash
# The GPU checks, as one run on a CUDA machine in at most 8 minutes: `pytest -m gpu` (320 s at
# most), the training bench (CPU and CUDA side by side, 70 s at most) and the training floor on
# CUDA (the trainer against a bare loop over the same model, loss and update, 90 s at most).
# Writes its logs, bench/results/training.json and training_floor.json to $OUT (or ./gpu-check).
set -o pipefail
OUT=${OUT:-gpu-check}; mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
timeout 320 python3 -m pytest -m gpu tests/test_gpu.py -q -p no:cacheprovider -o addopts=-ra \
  --durations=10 2>&1 | tee "$OUT/gpu_tests.log"
timeout 70 python3 bench/bench_training.py --sizes "${BENCH_CLIPS:-2000}" --epochs 2 2>&1 \
  | tee "$OUT/bench_training.log"
cp bench/results/training.json "$OUT/" 2>/dev/null || true
# Every system's floor ratio on CUDA (the rows are written as they come: a timeout keeps them).
timeout 90 python3 bench/bench_training.py --floor --devices cuda --clips "${FLOOR_CLIPS:-1000}" \
  --epochs 1 --repeats 3 --out "$OUT/training_floor.json" 2>&1 | tee "$OUT/bench_floor.log"
