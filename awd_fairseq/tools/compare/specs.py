"""What the comparison trains and how it scores each model: fairseq-train and fairseq-eval-lm
arguments for this plugin's `awd_lstm` and `qrnn` (their recipes in awd_fairseq/config) and for
fairseq's own `transformer_lm` and `lstm_lm`.

* awd_lstm / qrnn: the recipe as fairseq-train flags (`--awd-recipe`, `--qrnn-recipe`; PTB by
  default), scored by fairseq-eval-lm under `awd_language_modeling` as one carried stream (test
  batch size 1, as the original evaluates).
* transformer_lm: fairseq's language_modeling task with `--sample-break-mode none` (a contiguous
  stream cut into 256-token blocks; that path does not reach the numpy-2-incompatible
  `np.compat` of TokenBlockDataset's `eos` mode), tied embeddings, Adam (0.9, 0.98) with weight
  decay 0.01, inverse-square-root schedule with 400 warm-up updates, dropout 0.3 (a small corpus).
  The "recipe" size (6 x 512, FFN 2048, 8 heads) has about the PTB AWD-LSTM's 24M parameters.
* awd_lstm_mos: the AWD-LSTM with a mixture of softmaxes (Yang et al. 2018; `--mos-recipe`, PTB
  by default), scored as awd_lstm.
* lstm_lm: fairseq's LSTM language model at the AWD-LSTM's sizes (400 / 1150 x 3, tied through a
  400-wide output projection), SGD lr 20 with clipping 0.25, dropout 0.5, 70-token blocks; it
  starts every block from a zero state.
* The two fairseq models are scored with `--context-window`: blocks of 64 tokens, each seen with
  the 192 tokens before it (256 in all, the transformer's training length).
* The cache pointer runs under `awd_cache_pointer`; transformer_lm sees each 64-token window with
  the same 192 tokens of context (`--stream-context`). Not for lstm_lm: the pointer reads a
  model's last features through `forward(..., features_only=True)`, which fairseq's LSTMDecoder
  does not take.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .. import recipes

# fairseq-eval-lm windows of the fairseq models: (scored block, context before it); their sum is the
# transformer's training length (its position limit)
EVAL_WINDOW = {"recipe": (64, 192), "tiny": (8, 24)}

# model sizes: "recipe" is the published PTB configuration (and a transformer of similar size);
# "tiny" is for tests and dry runs
SIZES: Dict[str, Dict[str, List[str]]] = {
    "recipe": {
        "awd_lstm": [], "qrnn": [], "awd_lstm_mos": [],
        "transformer_lm": ["--decoder-layers", "6", "--decoder-embed-dim", "512", "--decoder-ffn-embed-dim", "2048",
                           "--decoder-attention-heads", "8"],
        "lstm_lm": ["--decoder-embed-dim", "400", "--decoder-hidden-size", "1150", "--decoder-layers", "3",
                    "--decoder-out-embed-dim", "400"],
    },
    "tiny": {
        "awd_lstm": ["++model.emsize=16", "++model.nhid=16", "dataset.batch_size=4", "++task.bptt=10"],
        "qrnn": ["++model.emsize=16", "++model.nhid=16", "dataset.batch_size=4", "++task.bptt=10"],
        "awd_lstm_mos": ["++model.emsize=16", "++model.nhid=16", "++model.nhidlast=16", "++model.n_experts=2",
                         "dataset.batch_size=4", "++task.bptt=10"],
        "transformer_lm": ["--decoder-layers", "1", "--decoder-embed-dim", "16", "--decoder-ffn-embed-dim", "32",
                           "--decoder-attention-heads", "2", "--batch-size", "4", "--tokens-per-sample", "32",
                           "--warmup-updates", "2"],
        "lstm_lm": ["--decoder-embed-dim", "16", "--decoder-hidden-size", "16", "--decoder-layers", "1",
                    "--decoder-out-embed-dim", "16", "--batch-size", "4", "--tokens-per-sample", "10"],
    },
}
MODELS = ("awd_lstm", "qrnn", "awd_lstm_mos", "transformer_lm", "lstm_lm")


@dataclass
class ModelSpec:
    name: str
    train: List[str]  # fairseq-train arguments after the data directory
    eval: List[str]  # fairseq-eval-lm arguments choosing the task and its windows
    pointer: Optional[List[str]]  # awd_cache_pointer arguments (windows, context); None: not supported
    carries_state: bool
    notes: str = ""
    extra: Dict[str, str] = field(default_factory=dict)


def _fairseq_lm(arch: str, size: List[str], recipe: List[str]) -> List[str]:
    return ["--task", "language_modeling", "--arch", arch, "--share-decoder-input-output-embed",
            "--sample-break-mode", "none", "--criterion", "cross_entropy", *recipe, *size]


def model_specs(data: str, size: str = "recipe", awd_recipe: str = "ptb_awd_lstm",
                qrnn_recipe: str = "ptb_qrnn", mos_recipe: str = "ptb_awd_lstm_mos") -> Dict[str, ModelSpec]:
    sizes, (block, context) = SIZES[size], EVAL_WINDOW[size]
    recurrent_eval = ["--task", "awd_language_modeling", "--test-batch-size", "1"]
    windowed_eval = ["--task", "language_modeling", "--tokens-per-sample", str(block + context),
                     "--context-window", str(context), "--sample-break-mode", "none", "--batch-size", "16"]
    windowed_pointer = ["--bptt", str(block), "--stream-context", str(context)]

    def recipe_flags(name, overrides):
        return recipes.fairseq_train_args(name, [f"task.data={data}", *overrides])[1:]

    specs = {
        "awd_lstm": ModelSpec("awd_lstm", recipe_flags(awd_recipe, sizes["awd_lstm"]), recurrent_eval, [], True,
                              f"recipe {awd_recipe}"),
        "qrnn": ModelSpec("qrnn", recipe_flags(qrnn_recipe, sizes["qrnn"]), recurrent_eval, [], True,
                          f"recipe {qrnn_recipe}"),
        "awd_lstm_mos": ModelSpec("awd_lstm_mos", recipe_flags(mos_recipe, sizes["awd_lstm_mos"]), recurrent_eval, [],
                                  True, f"recipe {mos_recipe}"),
        "transformer_lm": ModelSpec(
            "transformer_lm",
            _fairseq_lm("transformer_lm", sizes["transformer_lm"], [
                "--tokens-per-sample", str(block + context), "--batch-size", "8", "--dropout", "0.3", "--attention-dropout", "0.1",
                "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--weight-decay", "0.01", "--clip-norm", "0.0",
                "--lr", "0.0005", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "400",
                "--warmup-init-lr", "1e-07"]),
            windowed_eval, windowed_pointer, False, f"Adam, inverse-sqrt warm-up, {block + context}-token blocks"),
        "lstm_lm": ModelSpec(
            "lstm_lm",
            _fairseq_lm("lstm_lm", sizes["lstm_lm"], [
                "--tokens-per-sample", "70", "--batch-size", "20", "--dropout", "0.5", "--optimizer", "sgd",
                "--lr", "20", "--clip-norm", "0.25"]),
            windowed_eval, None, False, "SGD lr 20, 70-token blocks from a zero state"),
    }
    return specs
