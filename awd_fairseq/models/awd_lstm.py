"""The `awd_lstm` model: AWD-LSTM of Merity, Keskar and Socher, "Regularizing and Optimizing LSTM
Language Models" (arXiv 1708.02182), after salesforce/awd-lstm-lm model.py.

The flags keep the original README's names (`--emsize --nhid --nlayers --dropout --dropouth
--dropouti --dropoute --wdrop --tied`), so its commands translate one-to-one; see README.md for
the mapping of the remaining flags. The dataclass defaults are the original's PTB recipe
(`python main.py --batch_size 20 --data data/penn --dropouti 0.4 --dropouth 0.25 ...`); the
named architectures override only what their recipe changes (models/architectures.py).
"""
from dataclasses import dataclass, field

from fairseq.dataclass import FairseqDataclass
from fairseq.models import FairseqLanguageModel, register_model

from ..modules.lstm_layer import LSTMLayer
from ..modules.split_softmax import default_cutoffs
from .architectures import named_architecture
from .checks import check_build
from .recurrent_decoder import RecurrentLMDecoder


@dataclass
class RecurrentLMConfig(FairseqDataclass):
    """Options shared by `awd_lstm` and `qrnn` (the original main.py's model flags)."""

    emsize: int = field(default=400, metadata={"help": "word embedding size (= last layer's size when tied)"})
    nhid: int = field(default=1150, metadata={"help": "hidden size of every layer but the last"})
    nlayers: int = field(default=3, metadata={"help": "number of recurrent layers"})
    dropout: float = field(default=0.4, metadata={"help": "locked dropout on the last layer's output"})
    dropouth: float = field(default=0.25, metadata={"help": "locked dropout between recurrent layers"})
    dropouti: float = field(default=0.4, metadata={"help": "locked dropout on the embedding output"})
    dropoute: float = field(default=0.1, metadata={"help": "embedding dropout: fraction of word types dropped"})
    wdrop: float = field(default=0.5, metadata={"help": "DropConnect on the recurrent weight matrices"})
    tied: bool = field(
        default=True,
        metadata={
            "help": "tie input and output embeddings (on by default). As in the original, whose flag "
            "is `action='store_false'`, passing --tied turns tying OFF"
        },
    )
    split_softmax_cutoffs: str = field(
        default="auto",
        metadata={
            "help": "split-softmax cluster boundaries, comma separated (e.g. 2800,20000,76000); "
            "'auto' applies the original's rule (none up to 75k words), 'none' disables"
        },
    )


def parse_cutoffs(spec: str, vocab_size: int):
    spec = spec.strip().lower()
    if spec == "auto":
        return default_cutoffs(vocab_size)
    if spec in ("", "none"):
        return []
    try:
        return [int(x) for x in spec.split(",")]
    except ValueError:
        raise ValueError(f"--split-softmax-cutoffs must be 'auto', 'none' or comma-separated integers, got {spec!r}")


def layer_sizes(cfg: RecurrentLMConfig):
    """emsize -> nhid -> ... -> nhid -> emsize (the last layer is emsize wide when tied)."""
    last = cfg.emsize if cfg.tied else cfg.nhid
    return [cfg.emsize] + [cfg.nhid] * (cfg.nlayers - 1) + [last]


class RecurrentLanguageModel(FairseqLanguageModel):
    """Base of `awd_lstm` and `qrnn`; subclasses say how to build one layer."""

    decoder_class = RecurrentLMDecoder  # a subclass taking `decoder_options(cfg)` as extra keywords

    @classmethod
    def build_layer(cls, cfg, index: int, input_size: int, hidden_size: int):
        raise NotImplementedError

    @classmethod
    def build_model(cls, cfg, task):
        check_build(cfg, task, cls.__name__)  # options in range, our task: models/checks.py
        if cfg.nlayers < 1:
            raise ValueError("--nlayers must be at least 1")
        dictionary = task.target_dictionary
        sizes = cls.layer_sizes(cfg)
        layers = [cls.build_layer(cfg, i, sizes[i], sizes[i + 1]) for i in range(cfg.nlayers)]
        decoder = cls.decoder_class(
            dictionary,
            layers,
            embed_dim=cfg.emsize,
            dropout=cfg.dropout,
            dropouth=cfg.dropouth,
            dropouti=cfg.dropouti,
            dropoute=cfg.dropoute,
            tied=cfg.tied,
            **cls.output_options(cfg, dictionary),
            **cls.decoder_options(cfg),
        )
        return cls(decoder)

    @classmethod
    def layer_sizes(cls, cfg):
        """The stack's sizes, input first (see `layer_sizes` above)."""
        return layer_sizes(cfg)

    @classmethod
    def output_options(cls, cfg, dictionary) -> dict:
        """How the decoder's output module is built: the split softmax by default."""
        return {"split_softmax_cutoffs": parse_cutoffs(cfg.split_softmax_cutoffs, len(dictionary))}

    @classmethod
    def decoder_options(cls, cfg) -> dict:
        """Keywords for `decoder_class` beyond the base decoder's: none here."""
        return {}

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args=None):
        key = "decoder.embed_tokens.weight"
        ours = self.decoder.embed_tokens.weight.size(0)
        if key in state_dict and state_dict[key].size(0) != ours:
            raise ValueError(
                f"the checkpoint's vocabulary has {state_dict[key].size(0)} entries but the data "
                f"directory's dict.txt gives {ours}: point the data argument at the fairseq-preprocess "
                "output the model was trained on"
            )
        return super().load_state_dict(state_dict, strict=strict, model_cfg=model_cfg, args=args)


@register_model("awd_lstm", dataclass=RecurrentLMConfig)
class AWDLSTMModel(RecurrentLanguageModel):
    @classmethod
    def build_layer(cls, cfg, index, input_size, hidden_size):
        return LSTMLayer(input_size, hidden_size, weight_drop=cfg.wdrop)


# `--arch awd_lstm` (registered with the model) is the PTB recipe: the dataclass defaults. The named
# architectures' values are in awd_fairseq/config/model/<arch>.yaml.
for _arch in ("awd_lstm_wt2", "awd_lstm_pennchar", "awd_lstm_enwik8"):
    named_architecture("awd_lstm", _arch, RecurrentLMConfig)
