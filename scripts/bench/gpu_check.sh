#!/usr/bin/env bash
# Every GPU check in one command, for a machine with CUDA PyTorch and no fairseq and no internet:
# the CUDA test cases, scripts/bench/gpu_check.py (speed against bare loops, eval-lm, the pointer,
# dynamic evaluation) and scripts/bench/check_mixed_precision_cuda.py (fp16, --amp, bf16 autocast
# against fp32). Expects, inside the checkout (ignored by git, see docs/gpu.md):
#   gpu/fairseq-py312/   fairseq for the machine's Python (PYTHONPATH), or an installed fairseq
#   gpu/data-bin/ptb/    PTB binarized by scripts/prepare_data.py
# Writes what it prints to $OUT (default gpu/out). UPDATES sets the training runs' length.
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-gpu/out}
UPDATES=${UPDATES:-300}
DATA=${DATA:-gpu/data-bin/ptb}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/gpu/fairseq-py312:$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PY:-python3}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  $PY -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
} 2>&1 | tee "$OUT/device.txt"
if $PY -c "import pytest" 2>/dev/null; then
  timeout 90 $PY -m pytest -q -p no:cacheprovider tests/test_forget_mult.py tests/test_rnn_gradients.py 2>&1 \
    | tail -5 | tee "$OUT/cuda_tests.txt"
else
  echo "no pytest: the Triton kernel is checked by scripts/bench/check_forget_mult_cuda.py" | tee "$OUT/cuda_tests.txt"
  timeout 120 $PY scripts/bench/check_forget_mult_cuda.py --bench 2>&1 | tail -15 | tee -a "$OUT/cuda_tests.txt"
fi
timeout 450 $PY scripts/bench/gpu_check.py "$DATA" --out "$OUT/runs" --updates "$UPDATES" --timeout 150 2>"$OUT/gpu_check.log" \
  | tee "$OUT/gpu_check.txt"
timeout 240 $PY scripts/bench/check_mixed_precision_cuda.py "$DATA" --updates 150 2>"$OUT/mixed_precision.log" \
  | tee "$OUT/mixed_precision.txt"
rm -rf "$OUT/runs"   # checkpoints: too large to bring back
