"""Test helpers for the fastai import: a state dict in fastai's exact key layout and shapes with
random weights, a small fastai vocabulary, and fastai's language-model forward pass written out
(fastai/text/models/awdlstm.py `AWD_LSTM.forward` and `LinearDecoder` in eval mode: embedding,
one-layer LSTMs on the raw hidden weights with the hidden state carried between calls, the tied
decoder with its bias), with plain torch modules."""
import pickle
from collections import OrderedDict
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

# fastai 2's special tokens (text/core.py defaults.text_spec_tok), then words
SPECIAL = ["xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj"]
WORDS = ["the", ",", ".", "of", "and", "in", "to", "a", "was", "'s", "game", "is", "it", "on", "with",
         "for", "as", "by", "he", "at", "that", "from", "his", "first", "-", "season", "team", "japan",
         "released", "series", "who", "new", "she", "one", "had", "an", "are", "film", "up", "they"]
ITOS = SPECIAL + WORDS  # 49 tokens


def fastai_state_dict(vocab: int = len(ITOS), emsize: int = 12, nhid: int = 20, nlayers: int = 3,
                      layout: str = "fastai", seed: int = 0, bias: bool = True) -> "OrderedDict[str, torch.Tensor]":
    """Random weights under fastai's keys: `fastai` (fastai 1: with the module's dropped-out copy of
    the hidden weights), `fastai2` (without it) or `fastai-0.7` (WeightDrop on the module)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return (torch.rand(*shape, generator=g) - 0.5) * 0.8

    emb = rand(vocab, emsize)
    sd = OrderedDict([("0.encoder.weight", emb)])
    sd["0.encoder_with_dropout.embed.weight" if layout == "fastai-0.7" else "0.encoder_dp.emb.weight"] = emb.clone()
    sizes = [emsize] + [nhid] * (nlayers - 1) + [emsize]
    for i in range(nlayers):
        n_in, n_out = sizes[i], sizes[i + 1]
        raw = rand(4 * n_out, n_out)
        if layout == "fastai-0.7":
            sd[f"0.rnns.{i}.module.weight_hh_l0_raw"] = raw
        else:
            sd[f"0.rnns.{i}.weight_hh_l0_raw"] = raw
        sd[f"0.rnns.{i}.module.weight_ih_l0"] = rand(4 * n_out, n_in)
        if layout == "fastai":  # the last dropped-out copy WeightDropout left on the module
            sd[f"0.rnns.{i}.module.weight_hh_l0"] = raw * (torch.rand(raw.shape, generator=g) > 0.5).float() * 2
        sd[f"0.rnns.{i}.module.bias_ih_l0"] = rand(4 * n_out)
        sd[f"0.rnns.{i}.module.bias_hh_l0"] = rand(4 * n_out)
    sd["1.decoder.weight"] = emb.clone()
    if bias:
        sd["1.decoder.bias"] = rand(vocab) * 4
    return sd


def write_itos(path, itos: List[str] = ITOS) -> None:
    with open(path, "wb") as f:
        pickle.dump(list(itos), f)


class FastaiForward:
    """fastai's language model in eval mode, written out, keeping its hidden state across calls as
    `AWD_LSTM` does (`self.hidden`, detached after every call)."""

    def __init__(self, sd):
        sd = sd.get("model", sd)
        self.embedding = sd["0.encoder.weight"]
        self.weight, self.bias = sd["1.decoder.weight"], sd.get("1.decoder.bias")
        self.lstms = []
        i = 0
        while f"0.rnns.{i}.module.weight_ih_l0" in sd:
            w_ih = sd[f"0.rnns.{i}.module.weight_ih_l0"]
            raw = sd.get(f"0.rnns.{i}.weight_hh_l0_raw", sd.get(f"0.rnns.{i}.module.weight_hh_l0_raw"))
            lstm = nn.LSTM(w_ih.size(1), raw.size(1), 1, batch_first=True)
            with torch.no_grad():
                lstm.weight_ih_l0.copy_(w_ih)
                lstm.weight_hh_l0.copy_(raw)  # the raw matrix: WeightDropout's eval copy
                lstm.bias_ih_l0.copy_(sd[f"0.rnns.{i}.module.bias_ih_l0"])
                lstm.bias_hh_l0.copy_(sd[f"0.rnns.{i}.module.bias_hh_l0"])
            self.lstms.append(lstm.eval())
            i += 1
        self.hidden: Optional[list] = None

    def reset(self):
        self.hidden = None

    @torch.no_grad()
    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) of fastai ids -> log-probabilities (B, T, V) over fastai's rows."""
        x = F.embedding(tokens, self.embedding)
        hidden = self.hidden or [None] * len(self.lstms)
        new = []
        for lstm, h in zip(self.lstms, hidden):
            x, h = lstm(x, h)
            new.append(tuple(t.detach() for t in h))
        self.hidden = new
        logits = x @ self.weight.t() + (0 if self.bias is None else self.bias)
        return F.log_softmax(logits, dim=-1)
