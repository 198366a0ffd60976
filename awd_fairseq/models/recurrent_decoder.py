"""The decoder shared by `awd_lstm` and `qrnn`: the AWD-LSTM forward pass of Merity et al. 2017
(arXiv 1708.02182, sec. 4; salesforce/awd-lstm-lm model.py `RNNModel.forward`) around any stack
of recurrent layers that map `(x (T, B, in), state) -> (y (T, B, out), state)`.

    tokens (B, T)
      -> embedding with embedding dropout (dropoute)           # whole word types dropped
      -> locked dropout (dropouti)                              # one mask per stream
      -> layer 1 -> locked dropout (dropouth) -> ... -> layer L # raw_output = layer L's output
      -> locked dropout (dropout)                               # features = dropped output
      -> output module over the (tied) output embedding        # split softmax by default

Recurrent state comes from, and goes back to, exactly one place per call: fairseq's
`incremental_state` when generating, else the `StreamState` in `net_input` when reading a stream
in BPTT windows (detached here when written back; modules/stream_state.py says who owns it),
else zeros (and nothing is kept). The returned `extra` carries no state.

The output module. Any `nn.Module` with

    hidden_size: int      the feature size it reads: the last layer's output size
    embed_dim: int        (optional, default hidden_size) the output embedding's width E
    log_probs(features (..., H), weight (V, E), bias (V,)) -> (..., V)
    target_log_probs(features (..., H), weight (V, E), bias (V,), target (...)) -> (...)

returning normalised log-probabilities. The decoder owns the output embedding `weight` (the input
embedding when tied) and `bias` and passes them to every call, with the features batch-major
(B, T, H). The model builder passes the module in (`softmax=`); by default it is
`SplitSoftmax(H, V, split_softmax_cutoffs)`, a plain softmax without cutoffs. A module whose
`embed_dim` differs from its `hidden_size` (a mixture of softmaxes projecting the last layer's
output to E) ties with an embedding of that width.
"""
from typing import Dict, List, Optional, Sequence

import torch
from fairseq.models import FairseqIncrementalDecoder
from torch import Tensor, nn

from ..modules.embedding_dropout import EmbeddingDropout
from ..modules.locked_dropout import LockedDropout
from ..modules.split_softmax import SplitSoftmax
from ..modules.stream_state import StreamState, detach_state
from ..modules.target_scores import target_only_probs

State = Dict[str, Tensor]


class RecurrentLMDecoder(FairseqIncrementalDecoder):
    supports_stream_state = True  # reads and writes a StreamState passed in net_input
    scores_targets_only = True  # takes `target` in net_input: computes log p(target) alone (tasks/scoring.py)

    def __init__(
        self,
        dictionary,
        layers: Sequence[nn.Module],
        embed_dim: int,
        dropout: float,
        dropouth: float,
        dropouti: float,
        dropoute: float,
        tied: bool,
        split_softmax_cutoffs: Sequence[int] = (),
        softmax: Optional[nn.Module] = None,
    ):
        super().__init__(dictionary)
        vocab_size = len(dictionary)
        out_dim = layers[-1].hidden_size
        if softmax is None:
            softmax = SplitSoftmax(out_dim, vocab_size, split_softmax_cutoffs)
        elif split_softmax_cutoffs:
            raise ValueError(
                "--split-softmax-cutoffs configures the default split softmax, not another output module: pass none"
            )
        if softmax.hidden_size != out_dim:
            raise ValueError(
                f"the output module reads features of size {softmax.hidden_size}, the last layer gives {out_dim}"
            )
        weight_dim = getattr(softmax, "embed_dim", softmax.hidden_size)
        if tied and weight_dim != embed_dim:
            raise ValueError(
                f"tied embeddings need the output module's embedding size ({weight_dim}; the last layer's "
                f"size for the split softmax) to equal --emsize ({embed_dim})"
            )
        self.embed_tokens = nn.Embedding(vocab_size, embed_dim)
        nn.init.uniform_(self.embed_tokens.weight, -0.1, 0.1)
        self.embedding_dropout = EmbeddingDropout(self.embed_tokens, dropoute)
        self.dropout_input = LockedDropout(dropouti)
        self.dropout_hidden = LockedDropout(dropouth)
        self.dropout_output = LockedDropout(dropout)
        self.layers = nn.ModuleList(layers)
        if tied:
            self.output_weight = None  # the input embedding's weight, read at call time
        else:
            self.output_weight = nn.Parameter(torch.empty(vocab_size, weight_dim).uniform_(-0.1, 0.1))
        self.output_bias = nn.Parameter(torch.zeros(vocab_size))
        self.softmax = softmax  # the output module (see the module docstring)

    # -- recurrent state ---------------------------------------------------------------------

    def _split_state(self, state: Optional[State]) -> List[Optional[tuple]]:
        if state is None:
            return [None] * len(self.layers)
        return [tuple(state[f"{i}.{n}"] for n in layer.state_names) for i, layer in enumerate(self.layers)]

    def _join_state(self, per_layer: List[tuple]) -> State:
        return {
            f"{i}.{n}": t
            for i, (layer, tensors) in enumerate(zip(self.layers, per_layer))
            for n, t in zip(layer.state_names, tensors)
        }

    def reorder_incremental_state(self, incremental_state, new_order: Tensor) -> None:
        state = self.get_incremental_state(incremental_state, "rnn_state")
        if state is not None:
            state = {k: v.index_select(0, new_order) for k, v in state.items()}
            self.set_incremental_state(incremental_state, "rnn_state", state)

    # -- forward -----------------------------------------------------------------------------

    def forward(
        self,
        prev_output_tokens: Tensor,
        src_lengths: Optional[Tensor] = None,
        incremental_state: Optional[Dict[str, Dict[str, Optional[Tensor]]]] = None,
        stream_state: Optional[StreamState] = None,
        features_only: bool = False,
        target: Optional[Tensor] = None,
        **unused,
    ):
        """`(log-probs (B, T, V), extra)`, or `(features (B, T, H), extra)` with `features_only`.

        With `target` (B, T) (set by the scoring paths: tasks/scoring.py), only the targets'
        log-probabilities are computed and returned as (B, T, 1), marked `extra["target_only"]`;
        `get_normalized_probs` then hands fairseq's SequenceScorer a stride-0 (B, T, V) view of them.
        """
        if incremental_state is not None:
            state = self.get_incremental_state(incremental_state, "rnn_state")
            if state is not None:  # the earlier tokens are already folded into the state
                prev_output_tokens = prev_output_tokens[:, -1:]
        elif stream_state is not None:
            state = stream_state.hidden
            if state is not None:  # a no-op but after a resume, where it was saved on the CPU
                state = {k: v.to(prev_output_tokens.device) for k, v in state.items()}
        else:
            state = None

        features, raw_output, new_state = self.extract_features(prev_output_tokens, state)

        if incremental_state is not None:
            self.set_incremental_state(incremental_state, "rnn_state", new_state)
        elif stream_state is not None:
            stream_state.hidden = detach_state(new_state)

        # "attn": None because fairseq's SequenceGenerator reads that key from every decoder
        extra = {"attn": None, "raw_output": raw_output, "dropped_output": features}
        if features_only:
            return features, extra
        if target is not None:
            extra["target_only"] = True
            return self.softmax.target_log_probs(features, *self._output_params(), target)[..., None], extra
        return self.output_layer(features), extra

    def extract_features(self, tokens: Tensor, state: Optional[State]):
        x = self.embedding_dropout(tokens.t())  # (T, B, E): time-major inside
        x = self.dropout_input(x)
        new_states = []
        for i, (layer, layer_state) in enumerate(zip(self.layers, self._split_state(state))):
            x, layer_new = layer(x, layer_state)
            new_states.append(layer_new)
            if i < len(self.layers) - 1:
                x = self.dropout_hidden(x)
        raw_output = x.transpose(0, 1)  # (B, T, H)
        features = self.dropout_output(x).transpose(0, 1)  # (B, T, H)
        return features, raw_output, self._join_state(new_states)

    # -- output distribution -----------------------------------------------------------------

    def _output_weight(self) -> Tensor:
        return self.embed_tokens.weight if self.output_weight is None else self.output_weight

    def _output_params(self):
        """(weight (V, E), bias (V,)) handed to every call of the output module."""
        return self._output_weight(), self.output_bias

    def output_layer(self, features: Tensor) -> Tensor:
        """Normalised log-probabilities (B, T, V); fairseq's `get_normalized_probs` re-normalises
        them, which leaves them unchanged (and makes sampling temperatures work as usual)."""
        return self.softmax.log_probs(features, *self._output_params())  # (B, T, V)

    def target_log_probs(self, features: Tensor, target: Tensor) -> Tensor:
        """log p(target) for features (B, T, H) and target (B, T), flattened to (B*T,); the split
        softmax computes only the blocks the targets need."""
        lprobs = self.softmax.target_log_probs(features, *self._output_params(), target)
        return lprobs.reshape(-1)  # (B*T,)

    def get_normalized_probs(self, net_output, log_probs: bool, sample=None) -> Tensor:
        if net_output[1].get("target_only"):  # (B, T, 1): log p(target) only
            scores = net_output[0].float()
            return target_only_probs(scores if log_probs else scores.exp(), len(self.dictionary))
        return super().get_normalized_probs(net_output, log_probs, sample)

    def max_positions(self) -> int:
        return int(1e6)  # recurrent: no positional limit
