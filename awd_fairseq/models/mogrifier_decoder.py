"""The recurrent decoder as deepmind/lamb's `lm.py` runs its Mogrifier LSTMs (Melis, Kočiský and
Blunsom, arXiv 1909.01792): the plugin's decoder (recurrent_decoder.py) with lamb's four
departures from the AWD-LSTM forward pass, each an option:

* `shared_mask_dropout=False` (lamb's default and its tuned configurations): the input,
  inter-layer and output dropouts draw a fresh mask per element (`tf.nn.dropout`), not one per
  stream as the AWD-LSTM's locked dropout (True keeps the locked dropouts);
* `layer_outputs="sum"` (lamb's `lstm_skip_connection`, `SkipMultiRNNCell`): the features are
  the sum of every layer's output (each before the inter-layer dropout), not the last layer's;
* `drop_state_probability` (lamb's `training._make_train_feed`): in training, each stream's
  carried state (every layer's h and c) is zeroed at the start of a window with this probability,
  so that the model also learns to start from zeros, as evaluation does at the start of a split;
* `softmax_temperature` T (lamb's `softmax_temperature` placeholder, fed at evaluation with the
  value fitted on validation data): every output logit is divided by T. lamb multiplies its
  logits by its `eval_softmax_temperature`, so lamb's 0.9 is T = 1 / 0.9 here. Dividing the
  output embedding and bias handed to the output module by T divides the logits of a plain
  softmax and of each mixture component (lamb tempers the components, not the mixture weights).

    tokens -> embedding (dropoute) -> dropout (dropouti) -> layer 1 -> dropout (dropouth) -> layer 2
      -> ... ; features = dropout(dropout)(y_1 + ... + y_L)      (sum)   or   y_L    (last)
"""
from typing import Optional

import torch
from torch import Tensor, nn

from ..modules.split_softmax import SplitSoftmax
from .recurrent_decoder import RecurrentLMDecoder, State

LAYER_OUTPUTS = ("sum", "last")


class MogrifierLMDecoder(RecurrentLMDecoder):
    def __init__(
        self, dictionary, layers, *, shared_mask_dropout: bool = False, layer_outputs: str = "sum",
        drop_state_probability: float = 0.0, softmax_temperature: float = 1.0, **base,
    ):
        super().__init__(dictionary, layers, **base)
        if layer_outputs not in LAYER_OUTPUTS:
            raise ValueError(f"--layer-outputs must be one of {', '.join(LAYER_OUTPUTS)}, got {layer_outputs!r}")
        sizes = {layer.hidden_size for layer in layers}
        if layer_outputs == "sum" and len(sizes) > 1:
            raise ValueError(
                f"--layer-outputs sum adds the layers' outputs, whose sizes differ ({sorted(sizes)}): give every "
                "layer the same size (--nhid = --emsize when tied) or pass --layer-outputs last"
            )
        if not 0.0 <= drop_state_probability < 1.0:
            raise ValueError(f"--drop-state-probability {drop_state_probability} is outside [0, 1)")
        if not softmax_temperature > 0.0:
            raise ValueError(f"--softmax-temperature must be positive, got {softmax_temperature}")
        if softmax_temperature != 1.0 and isinstance(self.softmax, SplitSoftmax) and self.softmax.cutoffs:
            raise ValueError(
                "--softmax-temperature does not reach the split softmax's cluster logits: pass "
                "--split-softmax-cutoffs none, or leave the temperature at 1"
            )
        if not shared_mask_dropout:  # one mask per element, as lamb's tf.nn.dropout
            self.dropout_input = nn.Dropout(self.dropout_input.p)
            self.dropout_hidden = nn.Dropout(self.dropout_hidden.p)
            self.dropout_output = nn.Dropout(self.dropout_output.p)
        self.layer_outputs = layer_outputs
        self.drop_state_probability = drop_state_probability
        self.softmax_temperature = softmax_temperature

    def _drop_carried_state(self, state: State) -> State:
        """Zero each stream's whole state with probability drop_state_probability (training)."""
        any_tensor = next(iter(state.values()))
        keep = (torch.rand(any_tensor.size(0), 1, device=any_tensor.device) >= self.drop_state_probability)
        keep = keep.to(any_tensor.dtype)  # (B, 1): one draw per stream for every layer's h and c
        return {name: tensor * keep for name, tensor in state.items()}

    def extract_features(self, tokens: Tensor, state: Optional[State]):
        if self.training and state and self.drop_state_probability > 0.0:
            state = self._drop_carried_state(state)
        x = self.embedding_dropout(tokens.t())  # (T, B, E): time-major inside
        x = self.dropout_input(x)
        new_states, total = [], None
        for i, (layer, layer_state) in enumerate(zip(self.layers, self._split_state(state))):
            x, layer_new = layer(x, layer_state)
            new_states.append(layer_new)
            if self.layer_outputs == "sum":
                total = x if total is None else total + x
            if i < len(self.layers) - 1:
                x = self.dropout_hidden(x)
        out = total if self.layer_outputs == "sum" else x  # (T, B, H)
        raw_output = out.transpose(0, 1)  # (B, T, H)
        features = self.dropout_output(out).transpose(0, 1)  # (B, T, H)
        return features, raw_output, self._join_state(new_states)

    def _output_params(self):
        weight, bias = super()._output_params()
        if self.softmax_temperature == 1.0:
            return weight, bias
        return weight / self.softmax_temperature, bias / self.softmax_temperature
