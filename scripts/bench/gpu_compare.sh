#!/usr/bin/env bash
# The comparison on a GPU: scripts/compare_lms.py on PTB at a budget of minutes of training per
# model, for a machine set up as for gpu_check.sh (gpu/fairseq-py312 and gpu/data-bin/ptb inside
# the checkout, no installed fairseq needed: the fairseq tools run as `python -m fairseq_cli.*`).
# Prints the table and keeps table.md, results.json (and the plots where matplotlib is installed)
# in $OUT; the checkpoints are deleted. A rerun with the same $OUT reuses every finished step.
#   MINUTES  training minutes per model (default 1)     MODELS  compare_lms.py --models
#   SIZE     recipe (the published sizes) or small      EXTRA   more compare_lms.py flags
#   LIMIT    seconds for the whole comparison (default 540)
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-gpu/out/compare}
DATA=${DATA:-gpu/data-bin/ptb}
MINUTES=${MINUTES:-1}
MODELS=${MODELS:-awd_lstm,qrnn,mogrifier_lstm,transformer_lm}
SIZE=${SIZE:-recipe}
EXTRA=${EXTRA:---no-pointer --no-dyneval}
export PYTHONPATH="$PWD/gpu/fairseq-py312:$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PY:-python3}
mkdir -p "$OUT/runs"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  $PY -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
  echo "$PY scripts/compare_lms.py $DATA --out $OUT/runs --budget-minutes $MINUTES --size $SIZE --models $MODELS" \
    "--valid-every-updates 200 --no-progress $EXTRA"
} 2>&1 | tee "$OUT/device.txt"
# shellcheck disable=SC2086  # EXTRA is a list of flags
timeout "${LIMIT:-540}" $PY scripts/compare_lms.py "$DATA" --out "$OUT/runs" --budget-minutes "$MINUTES" --size "$SIZE" \
  --models "$MODELS" --valid-every-updates 200 --no-progress $EXTRA 2>"$OUT/compare.log" | tee "$OUT/compare.txt"
for f in table.md results.json valid_vs_time.png valid_vs_tokens.png; do
  [ -f "$OUT/runs/$f" ] && cp "$OUT/runs/$f" "$OUT/"
done
tail -n 5 "$OUT/compare.log"
rm -rf "$OUT"/runs/*/checkpoints
