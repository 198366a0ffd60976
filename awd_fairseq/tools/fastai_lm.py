"""fastai's AWD-LSTM language model (ULMFiT: Howard and Ruder, "Universal Language Model Fine-tuning
for Text Classification", arXiv 1801.06146; fastai/text/models/awdlstm.py and text/learner.py) read
from its state dict and written into this plugin's `awd_lstm`.

fastai's language model is `SequentialRNN(AWD_LSTM, LinearDecoder)`: an embedding, `n_layers`
one-layer `nn.LSTM`s each wrapped in `WeightDropout` on `weight_hh_l0`, the last one `emb_sz` wide,
and a linear decoder tied to the embedding, with a bias. Its state dict, in the layouts read here
(`{"model": state_dict, "opt": ...}` too, as fastai's `Learner.save` writes it):

    fastai 1 and 2                          fastai 0.7 (`fwd_wt103.h5`)
    0.encoder.weight           (V, E)       0.encoder.weight
    0.encoder_dp.emb.weight    its copy     0.encoder_with_dropout.embed.weight  (optional)
    0.rnns.{i}.weight_hh_l0_raw  (4H, H)    0.rnns.{i}.module.weight_hh_l0_raw
    0.rnns.{i}.module.weight_ih_l0 (4H, I)  0.rnns.{i}.module.weight_ih_l0
    0.rnns.{i}.module.bias_ih_l0, bias_hh_l0 (4H,)     the same
    0.rnns.{i}.module.weight_hh_l0  (fastai 1 only: the last dropped-out copy, ignored)
    1.decoder.weight           (V, E), equal to 0.encoder.weight (tied)
    1.decoder.bias             (V,)         (fastai 0.7 has none: a zero bias)

The raw `weight_hh_l0_raw` is the hidden-to-hidden matrix; fastai itself drops the module's copy
when it loads (text/learner.py `clean_raw_keys`). Anything else (a QRNN, a classifier's encoder, a
bidirectional or untied model) is refused with one line naming the key.

This plugin's `awd_lstm` has the same forward pass in eval mode (embedding, the LSTMs, the tied
decoder with its bias, a softmax): `fill_awd_lstm` copies the tensors into a built model.
"""
import logging
from dataclasses import dataclass
from typing import Dict, List, Mapping

import torch
from torch import Tensor
from torch.nn.utils import parametrize

logger = logging.getLogger(__name__)

# fastai's `awd_lstm_lm_config` (text/models/awdlstm.py): the language model's dropouts, which
# fastai scales all together by `drop_mult`; keyed by this plugin's flag names
FASTAI_LM_DROPOUTS = {"dropout": 0.1, "dropouth": 0.15, "dropouti": 0.25, "dropoute": 0.02, "wdrop": 0.2}

LAYOUTS = {  # name -> (raw hidden-to-hidden key, embedding copy key), `{i}` the layer
    "fastai": ("0.rnns.{i}.weight_hh_l0_raw", "0.encoder_dp.emb.weight"),
    "fastai-0.7": ("0.rnns.{i}.module.weight_hh_l0_raw", "0.encoder_with_dropout.embed.weight"),
}
LSTM_KEYS = ("weight_ih_l0", "bias_ih_l0", "bias_hh_l0")


@dataclass
class FastaiLM:
    """The tensors of a fastai AWD-LSTM language model, by meaning."""

    embedding: Tensor  # (V, E), also the decoder's weight
    bias: Tensor  # (V,)
    layers: List[Dict[str, Tensor]]  # per LSTM: weight_ih_l0 (4H, I), weight_hh_l0 (4H, H), bias_ih_l0, bias_hh_l0
    layout: str

    @property
    def sizes(self) -> List[int]:
        """The stack's sizes, input first: E, H_1, ..., H_L."""
        return [self.embedding.size(1)] + [layer["weight_hh_l0"].size(1) for layer in self.layers]

    def awd_lstm_flags(self) -> Dict[str, int]:
        sizes = self.sizes
        nhid = sizes[1] if len(self.layers) > 1 else sizes[0]
        return {"emsize": sizes[0], "nhid": nhid, "nlayers": len(self.layers)}


def unwrap(state: Mapping) -> Mapping:
    """The model's state dict, also from fastai's `{"model": ..., "opt": ...}`."""
    if isinstance(state.get("model"), Mapping):
        return state["model"]
    return state


def read_state_dict(state: Mapping) -> FastaiLM:
    """Check a fastai AWD-LSTM language model's state dict and collect its tensors."""
    state = unwrap(state)
    layout = next((name for name, (raw, _) in LAYOUTS.items() if raw.format(i=0) in state), None)
    if layout is None:
        raise ValueError(
            f"no {LAYOUTS['fastai'][0].format(i=0)} (nor {LAYOUTS['fastai-0.7'][0].format(i=0)}) in the state dict: "
            "not a fastai AWD-LSTM language model (pass the lstm_fwd.pth / lstm_bwd.pth of a language model)"
        )
    raw, copy = LAYOUTS[layout]
    n = 0
    while raw.format(i=n) in state:
        n += 1
    expected = {"0.encoder.weight", copy, "1.decoder.weight", "1.decoder.bias"}
    for i in range(n):
        expected |= {raw.format(i=i), f"0.rnns.{i}.module.weight_hh_l0"}
        expected |= {f"0.rnns.{i}.module.{k}" for k in LSTM_KEYS}
    unexpected = sorted(k for k in state if k not in expected)
    if unexpected:
        raise ValueError(f"unexpected key {unexpected[0]} in the state dict: only fastai's unidirectional "
                         "AWD-LSTM language model (embedding, LSTMs, tied linear decoder) can be imported")
    required = ["0.encoder.weight", "1.decoder.weight"]
    required += [f"0.rnns.{i}.module.{k}" for i in range(n) for k in LSTM_KEYS]
    missing = [k for k in required if k not in state]
    if missing:
        raise ValueError(f"{missing[0]} is missing from the state dict (a {layout} layout otherwise)")

    def tensor(key) -> Tensor:
        value = state[key]
        if not isinstance(value, Tensor):
            raise ValueError(f"{key} is a {type(value).__name__}, not a tensor")
        return value.detach().float()

    embedding = tensor("0.encoder.weight")
    vocab, emsize = embedding.shape
    for key in (copy, "1.decoder.weight"):
        if key in state and not torch.equal(tensor(key), embedding):
            raise ValueError(f"{key} differs from 0.encoder.weight: only tied models can be imported "
                             "(awd_lstm unties with a last layer --nhid wide, fastai keeps it --emsize wide)")
    bias = tensor("1.decoder.bias") if "1.decoder.bias" in state else torch.zeros(vocab)
    if "1.decoder.bias" not in state:
        logger.info("no 1.decoder.bias: the output bias is zero, as the model had none")
    if bias.shape != (vocab,):
        raise ValueError(f"1.decoder.bias has shape {tuple(bias.shape)}, expected ({vocab},) for 0.encoder.weight")
    layers = [
        {"weight_hh_l0": tensor(raw.format(i=i)), **{k: tensor(f"0.rnns.{i}.module.{k}") for k in LSTM_KEYS}}
        for i in range(n)
    ]
    _check_sizes(layers, emsize, raw)
    return FastaiLM(embedding=embedding, bias=bias, layers=layers, layout=layout)


def _check_sizes(layers: List[Dict[str, Tensor]], emsize: int, raw: str) -> None:
    """One-layer LSTMs chained from the embedding, the last one emsize wide, the others alike."""
    inputs = emsize
    for i, layer in enumerate(layers):
        hidden = layer["weight_hh_l0"].size(-1)
        shapes = {raw.format(i=i): (4 * hidden, hidden), f"0.rnns.{i}.module.weight_ih_l0": (4 * hidden, inputs),
                  f"0.rnns.{i}.module.bias_ih_l0": (4 * hidden,), f"0.rnns.{i}.module.bias_hh_l0": (4 * hidden,)}
        for (key, shape), value in zip(shapes.items(), (layer[k] for k in ("weight_hh_l0", *LSTM_KEYS))):
            if tuple(value.shape) != shape:
                raise ValueError(f"{key} has shape {tuple(value.shape)}, expected {shape}")
        if i == len(layers) - 1 and hidden != emsize:
            raise ValueError(f"{raw.format(i=i)}: the last LSTM is {hidden} wide, the embedding {emsize}: "
                             "tied models end at the embedding's width")
        if 0 < i < len(layers) - 1 and hidden != layers[0]["weight_hh_l0"].size(-1):
            raise ValueError(f"{raw.format(i=i)}: LSTM {i} is {hidden} wide, LSTM 0 "
                             f"{layers[0]['weight_hh_l0'].size(-1)}: awd_lstm has one --nhid for all but the last")
        inputs = hidden


def fill_awd_lstm(model, lm: FastaiLM, rows: Tensor) -> None:
    """Copy `lm` into a built `awd_lstm` (eval forward equal to fastai's). `rows` (V_model,) gives
    each of the model's rows its fastai row, or -1 for a word fastai lacks: the mean embedding and
    the mean bias, as fastai's `match_embeds`."""
    decoder = model.decoder
    if decoder.output_weight is not None:
        raise ValueError("the model is untied: build it tied (without --tied)")
    known = (rows >= 0)[:, None]
    picked = rows.clamp(min=0)
    targets = {
        "decoder.embed_tokens.weight": torch.where(known, lm.embedding[picked], lm.embedding.mean(0)),
        "decoder.output_bias": torch.where(known[:, 0], lm.bias[picked], lm.bias.mean(0)),
    }
    for i, (layer, source) in enumerate(zip(decoder.layers, lm.layers)):
        dropped = parametrize.is_parametrized(layer.lstm, "weight_hh_l0")  # weight drop keeps the raw matrix here
        hh = "parametrizations.weight_hh_l0.original" if dropped else "weight_hh_l0"
        targets[f"decoder.layers.{i}.lstm.{hh}"] = source["weight_hh_l0"]
        targets.update((f"decoder.layers.{i}.lstm.{k}", source[k]) for k in LSTM_KEYS)
    params = dict(model.named_parameters())
    left = sorted(set(params) - set(targets))
    if left or len(decoder.layers) != len(lm.layers):
        raise ValueError(f"the built model has parameters the fastai model does not fill: {left or 'layers'}")
    with torch.no_grad():
        for name, value in targets.items():
            if params[name].shape != value.shape:
                raise ValueError(f"{name}: the model's shape {tuple(params[name].shape)}, "
                                 f"fastai's {tuple(value.shape)}")
            params[name].copy_(value)
