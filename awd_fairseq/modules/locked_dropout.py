"""Locked (variational) dropout over a time-major sequence.

One dropout mask is drawn per sequence and reused at every time step, as in the variational
RNN dropout of Gal & Ghahramani (2016, arXiv 1512.05287) and section 4.2 of Merity et al.,
"Regularizing and Optimizing LSTM Language Models" (arXiv 1708.02182). Follows
salesforce/awd-lstm-lm ``locked_dropout.py``, except that the probability is fixed at
construction instead of being passed to every ``forward`` call.
"""

import torch
from torch import nn


class LockedDropout(nn.Module):
    """Dropout with a mask of shape (1, B, H) shared by all T steps of a (T, B, H) input.

    In training each kept unit is scaled by 1 / (1 - p) so that expectations are unchanged;
    in eval mode, or when ``p == 0``, the input is returned unchanged.
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"locked dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (T, B, H), time-major
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((1,) + tuple(x.shape[1:])).bernoulli_(keep).div_(keep)  # (1, B, H)
        return x * mask  # (T, B, H), broadcast over time

    def extra_repr(self) -> str:
        return f"p={self.p}"
