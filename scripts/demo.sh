#!/usr/bin/env bash
# The embedded default, end to end on the CPU: prepare the WikiText-2 copy that ships in data/,
# train a small AWD-LSTM for one epoch (capped at DEMO_MINUTES), score it with fairseq-eval-lm.
# Run through `make demo`, which installs first. Every value below can be overridden from the
# environment.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
DATA=${DATA:-data-bin/wikitext-2}
RUN=${RUN:-runs/demo}
DEMO_MINUTES=${DEMO_MINUTES:-8}
MODEL=${MODEL:---emsize 64 --nhid 256 --nlayers 2 --split-softmax-cutoffs 2000,10000}

if [ ! -f "$DATA/train.bin" ]; then
  echo "== preparing the embedded WikiText-2 into $DATA"
  $PY scripts/prepare_data.py wikitext-2 --from data/wikitext-2 --out "$DATA"
fi

echo "== training a small AWD-LSTM (one epoch, at most $DEMO_MINUTES minutes) into $RUN"
rm -rf "$RUN"
fairseq-train "$DATA" --user-dir awd_fairseq --task awd_language_modeling --arch awd_lstm_wt2 $MODEL \
  --criterion awd_split_cross_entropy --optimizer nt_asgd --lr-scheduler awd_when --lr 30 --clip-norm 0.25 \
  --batch-size 80 --bptt 70 --max-epoch 1 --stop-time-hours "$(echo "$DEMO_MINUTES / 60" | bc -l)" \
  --save-dir "$RUN" --log-format tqdm --cpu --seed 1882 2>&1 | tee "$RUN.train.log"

score() {
  fairseq-eval-lm "$DATA" --user-dir awd_fairseq --task awd_language_modeling --path "$RUN/checkpoint_last.pt" \
    --gen-subset "$1" --cpu --no-progress-bar 2>&1 | tee -a "$RUN.eval.log" | grep -E "Loss \(base 2\)" | sed 's/.*| //'
}
echo "== scoring with fairseq-eval-lm (whole split as one stream, state carried, batch size 1)"
VALID=$(score valid); TEST=$(score test)
TRAIN_VALID=$(grep -oE "valid on 'valid' subset \| loss [0-9.]+ \| ppl [0-9.]+" "$RUN.train.log" | tail -1 | grep -oE "ppl [0-9.]+")
echo
echo "validation during training (10 streams): $TRAIN_VALID"
echo "fairseq-eval-lm valid: $VALID"
echo "fairseq-eval-lm test:  $TEST"
