"""`mogrifier_lstm` and `mogrifier_lstm_mos`: the Mogrifier LSTM language models of Melis, Kočiský
and Blunsom, "Mogrifier LSTM" (ICLR 2020, arXiv 1909.01792), as deepmind/lamb builds them
(lm.py, cell.py, tiled_lstm.py), on the plugin's recurrent decoder: the layers are
modules/mogrifier_lstm.py's, the decoder mogrifier_decoder.py's (lamb's dropouts, the sum of the
layers' outputs, dropped carried state, the softmax temperature), and the task, criterion,
fairseq-eval-lm, the cache pointer, dynamic evaluation, generation and scoring are unchanged.

The `mogrifier_lstm` dataclass defaults are lamb's tuned PTB 24M model
(lamb/experiment/mogrifier/config/786252db3825+_tune_ptb_24m_lstm_fm_d2_arms/trial_483/config):
2 layers, 5 rounds of rank 84, tied embeddings, input / inter-layer / output / state dropout
0.729 / 0.291 / 0.716 / 0.387. lamb sizes its models by a parameter budget (`num_params`); the
hidden size is the largest whose model fits it (lamb_flags.py `_budget_hidden_size`), here 912 for
24M parameters over lamb's 10,001-word PTB vocabulary. `mogrifier_lstm_mos` defaults to lamb's
WikiText-2 35M model (c51c838b33a5+_tune_wikitext-2_35m_lstm_mos2_fm_d2_arms/trial_747): a
2-component mixture of softmaxes, 6 rounds of rank 48, hidden size 1366 and embedding size 272
(lamb's `input_embedding_ratio` 0.1993 of it). Training options (optimizer, averaging, windows)
are not model options: config/recipe/ptb_mogrifier.yaml and wt2_mogrifier.yaml hold the full
recipes, docs/mogrifier.md the commands.

With `--mogrifier-rounds 0 --input-gate standard --layer-outputs last --shared-mask-dropout` and
no state dropout this is `awd_lstm`'s model (tests/test_mogrifier_model.py checks it); lamb's
initialisation (init_like_lamb below) is the one difference left.
"""
import math
from dataclasses import dataclass, field

import torch
from fairseq.dataclass import ChoiceEnum
from fairseq.models import register_model
from torch import nn

from ..modules.mixture_of_softmaxes import MixtureOfSoftmaxes
from ..modules.mogrifier_lstm import STEP_CHOICES, MogrifierLSTMLayer, truncated_normal_
from .awd_lstm import RecurrentLanguageModel, RecurrentLMConfig
from .awd_lstm_mos import MixtureOfSoftmaxesConfig, MixtureOfSoftmaxesLM
from .mogrifier_decoder import LAYER_OUTPUTS, MogrifierLMDecoder

TF_TRUNCATED_NORMAL_STD = 0.87962566103423978  # std of N(0, 1) cut at +-2: tf.variance_scaling divides by it


@dataclass
class MogrifierLSTMConfig(RecurrentLMConfig):
    """`awd_lstm`'s options at lamb's PTB 24M values, and the Mogrifier's."""

    emsize: int = field(default=912, metadata={"help": "word embedding size (= the layers' size when tied)"})
    nhid: int = field(default=912, metadata={"help": "hidden size of every layer (the last is --emsize when tied)"})
    nlayers: int = field(default=2, metadata={"help": "number of Mogrifier LSTM layers"})
    dropout: float = field(default=0.7156690388448465, metadata={"help": "dropout on the output (lamb's output_dropout)"})
    dropouth: float = field(
        default=0.2909822365241189, metadata={"help": "dropout between layers (lamb's inter_layer_dropout)"}
    )
    dropouti: float = field(default=0.7290787773167251, metadata={"help": "dropout on the embedding (input_dropout)"})
    dropoute: float = field(default=0.0, metadata={"help": "embedding dropout: fraction of word types dropped"})
    wdrop: float = field(default=0.0, metadata={"help": "DropConnect on the recurrent matrices W_hh"})
    mogrifier_rounds: int = field(
        default=5, metadata={"help": "rounds of mutual gating before each step (lamb's feature_mask_rounds); 0: an LSTM"}
    )
    mogrifier_rank: int = field(
        default=84, metadata={"help": "rank of each round's matrix, as two factors (feature_mask_rank); 0: full rank"}
    )
    state_dropout: float = field(
        default=0.38729439899832296,
        metadata={"help": "dropout on h before the rounds, one mask per stream and window (lamb's state_dropout)"},
    )
    drop_state_probability: float = field(
        default=0.01, metadata={"help": "in training, zero a stream's carried state with this probability per window"}
    )
    input_gate: ChoiceEnum(["capped", "standard"]) = field(
        default="capped",
        metadata={"help": "capped: c = f c + min(i, 1 - f) g (lamb's cap_input_gate); standard: c = f c + i g"},
    )
    forget_bias: float = field(default=1.0, metadata={"help": "mean of the forget gates' initial biases"})
    shared_mask_dropout: bool = field(
        default=False,
        metadata={"help": "one dropout mask per stream (the AWD-LSTM's locked dropout) instead of lamb's per element"},
    )
    layer_outputs: ChoiceEnum(LAYER_OUTPUTS) = field(
        default="sum", metadata={"help": "sum: the sum of every layer's output (lamb's lstm_skip_connection); last"}
    )
    softmax_temperature: float = field(
        default=1.0,
        metadata={"help": "divide the output logits by this (fit it on valid: awd_fairseq.tools.softmax_temperature; "
                  "set it in fairseq-eval-lm with --model-overrides \"{'softmax_temperature': T}\")"},
    )
    mogrifier_step: ChoiceEnum(STEP_CHOICES) = field(
        default="script", metadata={"help": "how the step loop runs: script (TorchScript), eager, or compile"}
    )


@dataclass
class MogrifierLSTMMoSConfig(MogrifierLSTMConfig, MixtureOfSoftmaxesConfig):
    """`mogrifier_lstm`'s options and the mixture's, at lamb's WikiText-2 35M values."""

    emsize: int = field(default=272, metadata={"help": "word embedding size (= each expert's latent size)"})
    nhid: int = field(default=1366, metadata={"help": "hidden size of every layer but the last"})
    dropout: float = field(default=0.34766651193735193, metadata={"help": "dropout on the output (output_dropout)"})
    dropouth: float = field(default=0.1988228263748591, metadata={"help": "dropout between layers (inter_layer_dropout)"})
    dropouti: float = field(default=0.5469087645499495, metadata={"help": "dropout on the embedding (input_dropout)"})
    mogrifier_rounds: int = field(default=6, metadata={"help": "rounds of mutual gating before each step; 0: an LSTM"})
    mogrifier_rank: int = field(default=48, metadata={"help": "rank of each round's matrix, as two factors; 0: full rank"})
    state_dropout: float = field(
        default=0.22137985867236876, metadata={"help": "dropout on h before the rounds, one mask per stream and window"}
    )
    n_experts: int = field(default=2, metadata={"help": "number of softmaxes mixed (lamb's mos_num_components)"})
    nhidlast: int = field(default=1366, metadata={"help": "size of the last layer (= --nhid for --layer-outputs sum)"})
    dropoutl: float = field(
        default=0.34766651193735193,
        metadata={"help": "dropout on the mixture's latent vectors (lamb's downprojected_output_dropout = output_dropout)"},
    )


@register_model("mogrifier_lstm", dataclass=MogrifierLSTMConfig)
class MogrifierLSTMModel(RecurrentLanguageModel):
    decoder_class = MogrifierLMDecoder

    @classmethod
    def build_layer(cls, cfg, index, input_size, hidden_size):
        return MogrifierLSTMLayer(
            input_size, hidden_size, rounds=cfg.mogrifier_rounds, rank=cfg.mogrifier_rank,
            state_dropout=cfg.state_dropout, weight_drop=cfg.wdrop, capped_input_gate=cfg.input_gate == "capped",
            forget_bias=cfg.forget_bias, step=cfg.mogrifier_step,
        )

    @classmethod
    def decoder_options(cls, cfg) -> dict:
        return dict(
            shared_mask_dropout=cfg.shared_mask_dropout, layer_outputs=cfg.layer_outputs,
            drop_state_probability=cfg.drop_state_probability, softmax_temperature=cfg.softmax_temperature,
        )

    @classmethod
    def build_model(cls, cfg, task):
        model = super().build_model(cfg, task)
        init_like_lamb(model.decoder)
        return model


@register_model("mogrifier_lstm_mos", dataclass=MogrifierLSTMMoSConfig)
class MogrifierLSTMMoSModel(MixtureOfSoftmaxesLM, MogrifierLSTMModel):
    @classmethod
    def output_options(cls, cfg, dictionary) -> dict:
        if cfg.split_softmax_cutoffs.strip().lower() not in ("auto", "none", ""):
            raise ValueError(
                "--split-softmax-cutoffs does not combine with the mixture of softmaxes (--n-experts): leave it unset"
            )
        dropoutl = cfg.dropout if cfg.dropoutl is None else cfg.dropoutl  # lamb: downprojected = output dropout
        softmax = MixtureOfSoftmaxes(
            cls.layer_sizes(cfg)[-1], cfg.emsize, cfg.n_experts, dropout_latent=dropoutl,
            max_chunk_elements=cfg.mos_chunk_elements, shared_mask=cfg.shared_mask_dropout,
        )
        return {"softmax": softmax}


@torch.no_grad()
def init_like_lamb(decoder) -> None:
    """lamb's lm.py initialisers for what the decoder owns (the layers initialise themselves):
    the embedding (and an untied output embedding) `variance_scaling(fan_out)` of TensorFlow,
    std 1 / sqrt(E) after truncation, a zero output bias, and the mixture's projections
    `variance_scaling(fan_in)` with zero biases."""
    width = decoder.embed_tokens.weight.size(1)
    std = math.sqrt(1.0 / width) / TF_TRUNCATED_NORMAL_STD
    for weight in (decoder.embed_tokens.weight, decoder.output_weight):
        if weight is not None:
            truncated_normal_(weight, std)
    nn.init.zeros_(decoder.output_bias)
    if isinstance(decoder.softmax, MixtureOfSoftmaxes):
        for linear in (decoder.softmax.latent, decoder.softmax.prior):
            truncated_normal_(linear.weight, math.sqrt(1.0 / linear.in_features) / TF_TRUNCATED_NORMAL_STD)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
