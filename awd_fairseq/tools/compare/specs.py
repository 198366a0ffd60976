"""What the comparison trains and how it scores each model: fairseq-train and fairseq-eval-lm
arguments for this plugin's `awd_lstm`, `qrnn`, `awd_lstm_mos` and `mogrifier_lstm` (their recipes
in awd_fairseq/config) and for fairseq's own `transformer_lm` and `lstm_lm`.

* awd_lstm / qrnn / awd_lstm_mos / mogrifier_lstm: the recipe as fairseq-train flags
  (`--awd-recipe`, `--qrnn-recipe`, `--mos-recipe`, `--mogrifier-recipe`; PTB by default), scored
  by fairseq-eval-lm under `awd_language_modeling` as one carried stream (test batch size 1, as the
  original evaluates); the Mogrifier without the softmax temperature lamb fits at evaluation.
* transformer_lm: fairseq's examples/language_model recipe (transformer_lm on WikiText-103): 512-token
  blocks of the stream (`--sample-break-mode none`), tied embeddings, dropout 0.1, Adam (0.9, 0.98),
  weight decay 0.01, lr 5e-4 with an inverse-square-root schedule, 2048 tokens per batch; its
  4,000 warm-up updates of 50,000 become the same 8% of the updates the budget allows, and its
  `--update-freq 16` is not used, so that a short budget has 16 times more updates. Scored as the
  recipe does, each block of 112 tokens after the 400 before it (`--context-window 400`).
* lstm_lm: fairseq's LSTM language model with Adam (lr 0.002, clip 0.25, the lr divided by 4 when
  validation stops improving; pytorch/examples' word_language_model SGD at lr 20 keeps fairseq's
  lstm_lm at the unigram loss for hundreds of updates, docs/comparison.md), on 70-token blocks,
  each from a zero state: fairseq's language_modeling task carries no state. It is scored on the
  same 70-token blocks from a zero state, the context it was trained with.
* The cache pointer and dynamic evaluation run for every model whose decoder gives its features
  (`forward(..., features_only=True)`): all but lstm_lm, whose LSTMDecoder does not take it. The
  transformer reads the scored blocks with the same context (`--stream-context`); its dynamic
  evaluation adapts every 20 tokens (the recurrent models: the reference's 5) with epsilon 1e-4
  (the reference's 2e-5 diverges on fairseq's transformer_lm, docs/dynamic_evaluation.md).
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .. import recipes

# the transformer's fairseq-eval-lm windows: (scored block, context before it); their sum is its
# training length (its position limit)
EVAL_WINDOW = {"recipe": (112, 400), "small": (112, 400), "tiny": (8, 24)}
# the transformer's dynamic-evaluation segments (each after the same context; within its positions)
TRANSFORMER_DYNEVAL_SEGMENT = {"recipe": 20, "small": 20, "tiny": 8}
# fairseq's recipe: --warmup-updates 4000 of --max-update 50000
TRANSFORMER_WARMUP_FRACTION = 4000 / 50000

# model sizes: "recipe" is the published PTB configuration (and a transformer of similar size);
# "small" the same models at about 5M parameters on PTB (a few hours of CPU, dynamic evaluation
# included); "tiny" is for tests and dry runs. Recipe fields the recipe does not list are set with ++.
# A recurrent model's row is the one of its recipe's architecture (model._name) where there is one,
# so that a recipe with another output (wt2_mogrifier: mogrifier_lstm_mos) gets the sizes it needs.
SIZES: Dict[str, Dict[str, List[str]]] = {
    "recipe": {
        "awd_lstm": [], "qrnn": [], "awd_lstm_mos": [],
        "transformer_lm": ["--decoder-layers", "6", "--decoder-embed-dim", "512", "--decoder-ffn-embed-dim", "2048",
                           "--decoder-attention-heads", "8"],
        "lstm_lm": ["--decoder-embed-dim", "400", "--decoder-hidden-size", "1150", "--decoder-layers", "3",
                    "--decoder-out-embed-dim", "400"],
    },
    "small": {
        "awd_lstm": ["++model.emsize=200", "++model.nhid=400"],
        "qrnn": ["++model.emsize=200", "++model.nhid=400", "++model.nlayers=3"],
        "awd_lstm_mos": ["++model.emsize=200", "++model.nhid=400", "++model.nhidlast=200", "++model.n_experts=5"],
        # tied with the layers' outputs summed: every layer is --emsize wide; rank in the recipe's proportion
        "mogrifier_lstm": ["++model.emsize=300", "++model.nhid=300", "++model.mogrifier_rank=28"],
        "mogrifier_lstm_mos": ["++model.emsize=300", "++model.nhid=300", "++model.nhidlast=300",
                               "++model.mogrifier_rank=28"],
        "transformer_lm": ["--decoder-layers", "4", "--decoder-embed-dim", "256", "--decoder-ffn-embed-dim", "1024",
                           "--decoder-attention-heads", "4"],
        "lstm_lm": ["--decoder-embed-dim", "200", "--decoder-hidden-size", "400", "--decoder-layers", "3",
                    "--decoder-out-embed-dim", "200"],
    },
    "tiny": {
        "awd_lstm": ["++model.emsize=16", "++model.nhid=16", "dataset.batch_size=4", "++task.bptt=10"],
        "qrnn": ["++model.emsize=16", "++model.nhid=16", "dataset.batch_size=4", "++task.bptt=10"],
        "awd_lstm_mos": ["++model.emsize=16", "++model.nhid=16", "++model.nhidlast=16", "++model.n_experts=2",
                         "dataset.batch_size=4", "++task.bptt=10"],
        "mogrifier_lstm": ["++model.emsize=16", "++model.nhid=16", "++model.mogrifier_rounds=2",
                           "++model.mogrifier_rank=4", "dataset.batch_size=4", "++task.eval_batch_size=4",
                           "++task.bptt=10"],
        "mogrifier_lstm_mos": ["++model.emsize=16", "++model.nhid=16", "++model.nhidlast=16",
                               "++model.mogrifier_rounds=2", "++model.mogrifier_rank=4", "++model.n_experts=2",
                               "dataset.batch_size=4", "++task.eval_batch_size=4", "++task.bptt=10"],
        "transformer_lm": ["--decoder-layers", "1", "--decoder-embed-dim", "16", "--decoder-ffn-embed-dim", "32",
                           "--decoder-attention-heads", "2", "--max-tokens", "128"],
        "lstm_lm": ["--decoder-embed-dim", "16", "--decoder-hidden-size", "16", "--decoder-layers", "1",
                    "--decoder-out-embed-dim", "16", "--batch-size", "4", "--tokens-per-sample", "10"],
    },
}
MODELS = ("awd_lstm", "qrnn", "awd_lstm_mos", "mogrifier_lstm", "transformer_lm", "lstm_lm")


@dataclass
class ModelSpec:
    name: str
    train: List[str]  # fairseq-train arguments after the data directory
    eval: List[str]  # fairseq-eval-lm arguments choosing the task and its windows
    pointer: Optional[List[str]]  # awd_cache_pointer arguments (windows, context); None: not supported
    dyneval: Optional[List[str]]  # awd_dynamic_eval arguments (segments, context); None: not supported
    dyneval_epsilons: List[float] = field(default_factory=lambda: [2e-5])
    notes: str = ""
    warmup_fraction: float = 0.0  # of the budget's updates, as --warmup-updates (0: the flags have none)
    caveat: str = ""

    def schedule(self, updates: int) -> List[str]:
        """The flags that depend on the number of updates the budget allows."""
        if not self.warmup_fraction:
            return []
        return ["--warmup-updates", str(max(1, round(self.warmup_fraction * updates)))]


def recipe_sizes(name: str, recipe: str, size: str) -> List[str]:
    """The size overrides of compared model `name` trained with `recipe`: SIZES' row for the
    recipe's architecture, else the model's."""
    rows = SIZES[size]
    return rows.get(recipes.compose(recipe).model._name, rows[name])


def _fairseq_lm(arch: str, size: List[str], recipe: List[str]) -> List[str]:
    return ["--task", "language_modeling", "--arch", arch, "--share-decoder-input-output-embed",
            "--sample-break-mode", "none", "--criterion", "cross_entropy", *recipe, *size]


def model_specs(data: str, size: str = "recipe", awd_recipe: str = "ptb_awd_lstm",
                qrnn_recipe: str = "ptb_qrnn", mos_recipe: str = "ptb_awd_lstm_mos",
                mogrifier_recipe: str = "ptb_mogrifier") -> Dict[str, ModelSpec]:
    sizes, (block, context) = SIZES[size], EVAL_WINDOW[size]
    recurrent_eval = ["--task", "awd_language_modeling", "--test-batch-size", "1"]
    transformer_eval = ["--task", "language_modeling", "--tokens-per-sample", str(block + context),
                        "--context-window", str(context), "--sample-break-mode", "none", "--batch-size", "16"]
    lstm_block = "10" if size == "tiny" else "70"
    lstm_eval = ["--task", "language_modeling", "--tokens-per-sample", lstm_block, "--sample-break-mode", "none",
                 "--batch-size", "16"]

    def awd(name, recipe):
        flags = recipes.fairseq_train_args(recipe, [f"task.data={data}", *recipe_sizes(name, recipe, size)])[1:]
        return ModelSpec(name, flags, recurrent_eval, [], [], notes=f"recipe {recipe}")

    specs = {
        "awd_lstm": awd("awd_lstm", awd_recipe),
        "qrnn": awd("qrnn", qrnn_recipe),
        "awd_lstm_mos": awd("awd_lstm_mos", mos_recipe),
        "mogrifier_lstm": awd("mogrifier_lstm", mogrifier_recipe),
        "transformer_lm": ModelSpec(
            "transformer_lm",
            _fairseq_lm("transformer_lm", sizes["transformer_lm"], [
                "--tokens-per-sample", str(block + context), "--max-tokens", "2048", "--dropout", "0.1",
                "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--weight-decay", "0.01", "--clip-norm", "0.0",
                "--lr", "0.0005", "--lr-scheduler", "inverse_sqrt", "--warmup-init-lr", "1e-07"]),
            transformer_eval, ["--bptt", str(block), "--stream-context", str(context)],
            ["--dyneval-bptt", str(TRANSFORMER_DYNEVAL_SEGMENT[size]), "--stream-context", str(context)],
            dyneval_epsilons=[1e-4],
            notes=f"fairseq's recipe, {block + context}-token blocks", warmup_fraction=TRANSFORMER_WARMUP_FRACTION),
        "lstm_lm": ModelSpec(
            "lstm_lm",
            _fairseq_lm("lstm_lm", sizes["lstm_lm"], [
                "--tokens-per-sample", lstm_block, "--batch-size", "20", "--dropout", "0.5", "--optimizer", "adam",
                "--lr", "0.002", "--clip-norm", "0.25", "--lr-scheduler", "reduce_lr_on_plateau", "--lr-shrink", "0.25",
                "--lr-patience", "0"]),
            lstm_eval, None, None, notes="Adam lr 0.002, / 4 on plateau",
            caveat=f"trained and scored on {lstm_block}-token blocks from a zero state (fairseq's language_modeling "
                   "task carries no recurrent state)"),
    }
    return specs
