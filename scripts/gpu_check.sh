#!/usr/bin/env bash
# The GPU checks, as one run on a CUDA machine in at most 8 minutes: `pytest -m gpu` (6 min at
# most) and the training bench (CPU and CUDA side by side, 100 s at most). Writes its logs and
# bench/results/training.json to $OUT (or ./gpu-check).
set -o pipefail
OUT=${OUT:-gpu-check}; mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
timeout 360 python3 -m pytest -m gpu tests/test_gpu.py -q -p no:cacheprovider -o addopts=-ra \
  --durations=10 2>&1 | tee "$OUT/gpu_tests.log"
timeout 100 python3 bench/bench_training.py --sizes "${BENCH_CLIPS:-2000}" --epochs 2 2>&1 \
  | tee "$OUT/bench_training.log"
cp bench/results/training.json "$OUT/" 2>/dev/null || true
