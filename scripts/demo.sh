#!/usr/bin/env bash
# The embedded default, end to end on the CPU: prepare the WikiText-2 copy that ships in data/,
# train a small AWD-LSTM for one epoch, score it with fairseq-eval-lm. Run through `make demo`,
# which installs first. Every value below can be overridden from the environment.
#
# The run is capped by updates, not by time, so that every machine prints the same figures:
# DEMO_MAX_UPDATE=N stops after N updates (0, the default, is the whole epoch: 1536 updates).
# DEMO_MINUTES=M adds a wall-clock cap (fairseq's --stop-time-hours); a slower or busier machine
# then stops earlier and prints a higher perplexity.
#
# The figures also depend on the float rounding of the kernels, which differ by instruction set and
# thread count, and early training at --lr 30 amplifies a one-ulp difference to a different run
# (docs/training.md, "Reproducible figures"). So the demo runs on DEMO_THREADS threads (1) and, on
# x86 machines with AVX2 (AVX-512 ones included), pins ATen and oneDNN to their AVX2 kernels and MKL
# to its COMPATIBLE branch: MKL's AVX2 branch rounds differently on Intel and AMD processors.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
DATA=${DATA:-data-bin/wikitext-2}
RUN=${RUN:-runs/demo}
DEMO_MAX_UPDATE=${DEMO_MAX_UPDATE:-0}
DEMO_MINUTES=${DEMO_MINUTES:-}
SEED=${SEED:-1882}
# small and lightly regularised: the WikiText-2 recipe's dropouts are for 750 epochs, not one
MODEL=${MODEL:---emsize 64 --nhid 256 --nlayers 2 --split-softmax-cutoffs 2000,10000}
REG=${REG:---dropout 0.1 --dropouth 0.1 --dropouti 0.1 --dropoute 0 --wdrop 0.2}
BATCH=${BATCH:-20}
DEMO_THREADS=${DEMO_THREADS:-1}

export OMP_NUM_THREADS="$DEMO_THREADS" MKL_NUM_THREADS="$DEMO_THREADS"
CAPABILITY=$($PY -c 'import torch; print(torch.backends.cpu.get_cpu_capability())')
case "$CAPABILITY" in
  AVX2|AVX512)
    export ATEN_CPU_CAPABILITY=${ATEN_CPU_CAPABILITY:-avx2} MKL_CBWR=${MKL_CBWR:-COMPATIBLE} \
      ONEDNN_MAX_CPU_ISA=${ONEDNN_MAX_CPU_ISA:-AVX2} DNNL_MAX_CPU_ISA=${DNNL_MAX_CPU_ISA:-AVX2} ;;
  *) echo "== torch runs its $CAPABILITY kernels here, not AVX2: the figures will differ from the README's (docs/training.md)" ;;
esac
echo "== kernels: ATen ${ATEN_CPU_CAPABILITY:-auto}, MKL ${MKL_CBWR:-auto}, oneDNN ${ONEDNN_MAX_CPU_ISA:-auto}; $DEMO_THREADS thread(s)"

if [ ! -f "$DATA/train.bin" ]; then
  echo "== preparing the embedded WikiText-2 into $DATA"
  $PY scripts/prepare_data.py wikitext-2 --from data/wikitext-2 --out "$DATA"
fi

CAP=(--max-epoch 1)
what="one epoch"
if [ "$DEMO_MAX_UPDATE" != 0 ]; then CAP+=(--max-update "$DEMO_MAX_UPDATE"); what="$DEMO_MAX_UPDATE updates"; fi
if [ -n "$DEMO_MINUTES" ]; then
  CAP+=(--stop-time-hours "$(echo "$DEMO_MINUTES / 60" | bc -l)"); what="$what, at most $DEMO_MINUTES minutes"
fi

echo "== training a small AWD-LSTM ($what) into $RUN"
rm -rf "$RUN"
mkdir -p "$(dirname "$RUN")"   # a fresh clone has no runs/: tee below opens its log before fairseq-train makes $RUN
fairseq-train "$DATA" --user-dir awd_fairseq --task awd_language_modeling --arch awd_lstm_wt2 $MODEL $REG \
  --criterion awd_split_cross_entropy --optimizer nt_asgd --lr-scheduler awd_when --lr 30 --clip-norm 0.25 \
  --batch-size "$BATCH" --bptt 70 "${CAP[@]}" \
  --save-dir "$RUN" --log-format tqdm --cpu --seed "$SEED" 2>&1 | tee "$RUN.train.log"

score() {  # split, streams
  fairseq-eval-lm "$DATA" --user-dir awd_fairseq --task awd_language_modeling --path "$RUN/checkpoint_last.pt" \
    --gen-subset "$1" --test-batch-size "$2" --cpu --no-progress-bar 2>&1 | tee -a "$RUN.eval.log" \
    | grep -oE "Loss \(base 2\): .*"
}
echo "== scoring with fairseq-eval-lm (each split as contiguous streams, state carried)"
VALID10=$(score valid 10); TEST=$(score test 1)
UPDATES=$(grep -oE "num_updates [0-9]+" "$RUN.train.log" | tail -1 | grep -oE "[0-9]+" || true)
TRAIN_VALID=$(grep -oE "valid on 'valid' subset \| loss [0-9.]+ \| ppl [0-9.]+" "$RUN.train.log" | tail -1 | sed 's/.*| loss/Loss (base 2):/; s/ | ppl/, Perplexity:/')
echo
echo "trained for ${UPDATES:-?} updates"
echo "valid, printed by fairseq-train (10 streams): $TRAIN_VALID"
echo "valid, fairseq-eval-lm, 10 streams (same):    $VALID10"
echo "test,  fairseq-eval-lm, 1 stream (original): $TEST"
