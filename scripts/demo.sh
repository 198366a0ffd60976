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
DEMO_MINUTES=${DEMO_MINUTES:-5}
# small and lightly regularised: the WikiText-2 recipe's dropouts are for 750 epochs, not one
MODEL=${MODEL:---emsize 64 --nhid 256 --nlayers 2 --split-softmax-cutoffs 2000,10000}
REG=${REG:---dropout 0.1 --dropouth 0.1 --dropouti 0.1 --dropoute 0 --wdrop 0.2}
BATCH=${BATCH:-20}

if [ ! -f "$DATA/train.bin" ]; then
  echo "== preparing the embedded WikiText-2 into $DATA"
  $PY scripts/prepare_data.py wikitext-2 --from data/wikitext-2 --out "$DATA"
fi

echo "== training a small AWD-LSTM (one epoch, at most $DEMO_MINUTES minutes) into $RUN"
rm -rf "$RUN"
mkdir -p "$(dirname "$RUN")"   # a fresh clone has no runs/: tee below opens its log before fairseq-train makes $RUN
fairseq-train "$DATA" --user-dir awd_fairseq --task awd_language_modeling --arch awd_lstm_wt2 $MODEL $REG \
  --criterion awd_split_cross_entropy --optimizer nt_asgd --lr-scheduler awd_when --lr 30 --clip-norm 0.25 \
  --batch-size "$BATCH" --bptt 70 --max-epoch 1 --stop-time-hours "$(echo "$DEMO_MINUTES / 60" | bc -l)" \
  --save-dir "$RUN" --log-format tqdm --cpu --seed 1882 2>&1 | tee "$RUN.train.log"

score() {  # split, streams
  fairseq-eval-lm "$DATA" --user-dir awd_fairseq --task awd_language_modeling --path "$RUN/checkpoint_last.pt" \
    --gen-subset "$1" --test-batch-size "$2" --cpu --no-progress-bar 2>&1 | tee -a "$RUN.eval.log" \
    | grep -oE "Loss \(base 2\): .*"
}
echo "== scoring with fairseq-eval-lm (each split as contiguous streams, state carried)"
VALID10=$(score valid 10); TEST=$(score test 1)
TRAIN_VALID=$(grep -oE "valid on 'valid' subset \| loss [0-9.]+ \| ppl [0-9.]+" "$RUN.train.log" | tail -1 | sed 's/.*| loss/Loss (base 2):/; s/ | ppl/, Perplexity:/')
echo
echo "valid, printed by fairseq-train (10 streams): $TRAIN_VALID"
echo "valid, fairseq-eval-lm, 10 streams (same):    $VALID10"
echo "test,  fairseq-eval-lm, 1 stream (original): $TEST"
