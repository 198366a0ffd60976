"""`awd_lstm_mos` and `qrnn_mos`: the recurrent decoder with a mixture-of-softmaxes output layer,
AWD-LSTM-MoS of Yang, Dai, Salakhutdinov and Cohen, "Breaking the Softmax Bottleneck: A High-Rank
RNN Language Model" (arXiv 1711.03953, ICLR 2018), after zihangdai/mos model.py and main.py.

    ... layer L (nhidlast wide) -> locked dropout (dropout)   # features: AR reads these
      -> MixtureOfSoftmaxes(nhidlast -> n_experts x emsize, locked dropout dropoutl on the latent)
      -> K softmaxes through the tied embedding, mixed by softmax(W_p h)

The last recurrent layer is `--nhidlast` wide (the original's default: `--emsize`), no longer tied
to the embedding size; everything before the output layer is the `awd_lstm` / `qrnn` decoder, so
the task, criterion (AR on the dropped last-layer output, TAR on the raw one, as the original),
NT-ASGD, fine-tuning, eval-lm, the cache pointer, generation and scoring are unchanged.

The `awd_lstm_mos` dataclass defaults are the original README's PTB recipe (`python main.py
--dropouti 0.4 --dropoutl 0.29 --dropouth 0.225 --seed 28 --batch_size 12 --lr 20.0 --epoch 1000
--nhid 960 --nhidlast 620 --emsize 280 --n_experts 15`, the other model flags at main.py's
defaults: dropout 0.4, dropoute 0.1, wdrop 0.5, nlayers 3); `awd_lstm_mos_wt2` overrides what the
WikiText-2 recipe changes. docs/mixture_of_softmaxes.md gives the full training commands.
"""
from dataclasses import dataclass, field
from typing import Optional

from fairseq.dataclass import FairseqDataclass
from fairseq.models import register_model

from ..modules.mixture_of_softmaxes import DEFAULT_MAX_CHUNK_ELEMENTS, MixtureOfSoftmaxes
from .architectures import named_architecture
from .awd_lstm import AWDLSTMModel, RecurrentLMConfig
from .qrnn import QRNNConfig, QRNNLanguageModel


@dataclass
class MixtureOfSoftmaxesConfig(FairseqDataclass):
    """The output layer's options, at the original main.py's defaults."""

    n_experts: int = field(default=10, metadata={"help": "number of softmaxes mixed (K); 1 is a softmax of tanh(W h)"})
    nhidlast: Optional[int] = field(
        default=None, metadata={"help": "size of the last recurrent layer (default: --emsize, as the original)"}
    )
    dropoutl: Optional[float] = field(
        default=None,
        metadata={"help": "locked dropout on the mixture's latent vectors (default: --dropouth, as the original)"},
    )
    mos_chunk_elements: int = field(
        default=DEFAULT_MAX_CHUNK_ELEMENTS,
        metadata={
            "help": "form the n_experts x vocabulary logits for at most this many elements at once (recomputed "
            "in the backward pass); 0: all tokens in one piece, as the original"
        },
    )


@dataclass
class AWDLSTMMoSConfig(RecurrentLMConfig, MixtureOfSoftmaxesConfig):
    """`awd_lstm`'s options and the mixture's, with the original PTB recipe's values."""

    emsize: int = field(default=280, metadata={"help": "word embedding size (= each expert's latent size)"})
    nhid: int = field(default=960, metadata={"help": "hidden size of every layer but the last"})
    dropouth: float = field(default=0.225, metadata={"help": "locked dropout between recurrent layers"})
    dropouti: float = field(default=0.4, metadata={"help": "locked dropout on the embedding output"})
    n_experts: int = field(default=15, metadata={"help": "number of softmaxes mixed (K); 1 is a softmax of tanh(W h)"})
    nhidlast: Optional[int] = field(default=620, metadata={"help": "size of the last recurrent layer"})
    dropoutl: Optional[float] = field(
        default=0.29, metadata={"help": "locked dropout on the mixture's latent vectors"}
    )


@dataclass
class QRNNMoSConfig(QRNNConfig, MixtureOfSoftmaxesConfig):
    """`qrnn`'s options (its PTB recipe) and the mixture's (the original main.py's defaults)."""


class MixtureOfSoftmaxesLM:
    """Builds the recurrent decoder with a `nhidlast`-wide last layer and the mixture as its
    output module; mixed into a model class that says how to build one layer."""

    @classmethod
    def layer_sizes(cls, cfg):
        nhidlast = cfg.emsize if cfg.nhidlast is None else cfg.nhidlast
        if nhidlast < 1:
            raise ValueError(f"--nhidlast must be positive, got {nhidlast}")
        return [cfg.emsize] + [cfg.nhid] * (cfg.nlayers - 1) + [nhidlast]

    @classmethod
    def output_options(cls, cfg, dictionary) -> dict:
        if cfg.split_softmax_cutoffs.strip().lower() not in ("auto", "none", ""):
            raise ValueError(
                "--split-softmax-cutoffs does not combine with the mixture of softmaxes (--n-experts): leave it unset"
            )
        nhidlast = cls.layer_sizes(cfg)[-1]
        dropoutl = cfg.dropouth if cfg.dropoutl is None else cfg.dropoutl
        softmax = MixtureOfSoftmaxes(
            nhidlast, cfg.emsize, cfg.n_experts, dropout_latent=dropoutl, max_chunk_elements=cfg.mos_chunk_elements
        )
        return {"softmax": softmax}


@register_model("awd_lstm_mos", dataclass=AWDLSTMMoSConfig)
class AWDLSTMMoSModel(MixtureOfSoftmaxesLM, AWDLSTMModel):
    pass


@register_model("qrnn_mos", dataclass=QRNNMoSConfig)
class QRNNMoSModel(MixtureOfSoftmaxesLM, QRNNLanguageModel):
    pass


# `--arch awd_lstm_mos` (registered with the model) is the PTB recipe: the dataclass defaults;
# awd_fairseq/config/model/awd_lstm_mos_wt2.yaml holds the WikiText-2 model's values.
named_architecture("awd_lstm_mos", "awd_lstm_mos_wt2", AWDLSTMMoSConfig)
