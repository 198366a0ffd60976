"""The `qrnn` model: the quasi-recurrent language model of Merity, Keskar and Socher, "An Analysis
of Neural Language Modeling at Multiple Scales" (arXiv 1803.08240), built from the QRNN layers of
Bradbury et al. (arXiv 1611.01576) as salesforce/awd-lstm-lm model.py does with `--model QRNN`:

    QRNNLayer(window=2 if l == 0 else 1, output_gate=True, zoneout=0, save_prev_x=True)
    with WeightDrop on each layer's `linear.weight` (the Z, F and O rows)

Everything around the layers (embedding dropout, locked dropout, tying, split softmax, the
`raw_output` / `dropped_output` that AR and TAR read) is the decoder `awd_lstm` uses, so the task,
criterion, optimizer and cache pointer work unchanged. The recurrent state of a layer is `c` (and,
for the first layer, `prev_x`, its last input: the previous token's embedding, which the window-2
convolution of the next BPTT window's first step needs); the task carries and resets both with
the hidden state, and fairseq's incremental decoding keeps them like an LSTM's `(h, c)`.

Forget-gate convention: f weights the previous cell, c_t = f_t * c_{t-1} + (1 - f_t) * z_t, as in
the QRNN paper; pytorch-qrnn's f weights the new candidate (see modules/qrnn.py).

The dataclass defaults are the original README's PTB recipe (`python -u main.py --model QRNN
--batch_size 20 --clip 0.2 --wdrop 0.1 --nhid 1550 --nlayers 4 --emsize 400 --dropouth 0.3
--seed 9001 --dropouti 0.4 --epochs 550`, the other model flags at main.py's defaults); the named
architectures override only what their recipe changes. Training flags (batch size, clipping,
bptt, alpha / beta, optimizer) are not model options: awd_fairseq/config/ holds the full recipes.
"""
from dataclasses import dataclass, field

from fairseq.models import register_model

from ..modules.qrnn import QRNNLayer
from .architectures import named_architecture
from .awd_lstm import RecurrentLanguageModel, RecurrentLMConfig


@dataclass
class QRNNConfig(RecurrentLMConfig):
    """`awd_lstm`'s options with the PTB QRNN recipe's values, and zoneout."""

    nhid: int = field(default=1550, metadata={"help": "hidden size of every layer but the last"})
    nlayers: int = field(default=4, metadata={"help": "number of QRNN layers (window 2 on the first)"})
    dropouth: float = field(default=0.3, metadata={"help": "locked dropout between QRNN layers"})
    wdrop: float = field(default=0.1, metadata={"help": "DropConnect on each layer's gate projection"})
    zoneout: float = field(
        default=0.0,
        metadata={
            "help": "zoneout on the forget gates (Krueger et al. 2016): in training each unit keeps its "
            "previous cell with this probability; in evaluation f takes its expectation"
        },
    )


@register_model("qrnn", dataclass=QRNNConfig)
class QRNNLanguageModel(RecurrentLanguageModel):
    @classmethod
    def build_layer(cls, cfg, index, input_size, hidden_size):
        return QRNNLayer(
            input_size,
            hidden_size,
            window=2 if index == 0 else 1,
            output_gate=True,
            zoneout=cfg.zoneout,
            weight_drop=cfg.wdrop,
        )


# `--arch qrnn` (registered with the model) is the PTB recipe: the dataclass defaults. The named
# architectures' values are in awd_fairseq/config/model/<arch>.yaml.
for _arch in ("qrnn_wt2", "qrnn_wt103"):
    named_architecture("qrnn", _arch, QRNNConfig)
