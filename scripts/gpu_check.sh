#!/usr/bin/env bash
# The GPU checks, as one run on a CUDA machine: `pytest -m gpu` and the training bench (CPU and
# CUDA side by side). Writes its logs and bench/results/training.json to $OUT (or ./gpu-check).
set -o pipefail
OUT=${OUT:-gpu-check}; mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
python3 -m pytest -m gpu tests/test_gpu.py -q -p no:cacheprovider -o addopts=-ra 2>&1 | tee "$OUT/gpu_tests.log"
python3 bench/bench_training.py --sizes "${BENCH_CLIPS:-4000}" --epochs 2 2>&1 | tee "$OUT/bench_training.log"
cp bench/results/training.json "$OUT/" 2>/dev/null || true
