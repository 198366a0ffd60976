"""Weight drop: DropConnect on the hidden-to-hidden matrices of a recurrent layer.

DropConnect (Wan et al., ICML 2013) applied to the recurrent weights, as in section 2 of
Merity et al., "Regularizing and Optimizing LSTM Language Models" (arXiv 1708.02182).
salesforce/awd-lstm-lm ``weight_drop.py`` deletes the Parameter, re-creates it from a
``_raw`` copy on every call and monkey-patches ``flatten_parameters``; here the same effect
comes from ``torch.nn.utils.parametrize``: the raw matrix is stored at
``module.parametrizations.<name>.original`` and every read of ``module.<name>`` returns a
dropped-out copy in training (a fresh mask per read) and the raw matrix itself in eval.

How ``nn.LSTM`` picks it up (checked on torch 2.13, CPU): ``RNNBase.forward`` starts with
``_update_flat_weights()``, which notices that ``module.<name>`` no longer returns the tensor
it cached and rebuilds ``_flat_weights``, so each training forward uses a new mask. That
check reads the attribute several times (four parametrization calls per forward, the last
draw being the one used). Wrap the call in ``torch.nn.utils.parametrize.cached()`` to draw
the mask exactly once per forward; the model should do so around its recurrent layers.
Other consequences:

* the ``state_dict`` key ``<name>`` becomes ``parametrizations.<name>.original``;
* the whole module can only be saved through ``state_dict()`` (``torch.save(module)`` refuses
  parametrized modules), and ``copy.deepcopy`` fails after a training forward, while the
  LSTM still caches a non-leaf dropped-out weight (an eval forward clears it);
* on CUDA every training forward re-flattens the weights for cuDNN, as the original did.
"""

import logging
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

logger = logging.getLogger(__name__)


def drop_connect(weight: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout(weight, p, training)`` in distribution: each element zeroed with probability
    ``p``, the survivors scaled by 1 / (1 - p); the very same tensor when not training.

    On the CPU the mask is drawn as ``uniform >= p`` instead of through ``F.dropout``: torch's CPU
    Bernoulli sampler costs about 4x a uniform draw (81 against 20 ms for one (4600, 1150) matrix
    on our 2-core machine), and weight drop draws a whole matrix per layer per forward, ~10% of an
    AWD-LSTM training step. On other devices ``F.dropout`` (fused there) is used.
    """
    if not training or p == 0.0:
        return weight
    if weight.device.type != "cpu":
        return F.dropout(weight, p, True)
    mask = torch.rand_like(weight).ge_(p).mul_(1.0 / (1.0 - p))  # P(u >= p) = 1 - p for u ~ U[0, 1)
    return weight * mask


class DropConnect(nn.Module):
    """Parametrization returning ``drop_connect(weight, p, self.training)``.

    Each element of the weight matrix is zeroed with probability ``p`` and the survivors are
    scaled by 1 / (1 - p); identity (the very same tensor) in eval mode.
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"weight drop probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        # weight: (4H, H) for an LSTM's weight_hh_l{k}; any shape works
        return drop_connect(weight, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def apply_weight_drop(module: nn.Module, names: Sequence[str], p: float) -> nn.Module:
    """Register :class:`DropConnect` (``p``) on each parameter in ``names`` of ``module``.

    For the AWD-LSTM's one-layer ``nn.LSTM``s: ``apply_weight_drop(lstm, ("weight_hh_l0",), p)``.

    Returns ``module`` (modified in place). A no-op for ``p == 0``, so the parameter names and
    the ``state_dict`` keys stay those of the plain module.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"weight drop probability must be in [0, 1), got {p}")
    if p == 0.0:
        return module
    if isinstance(names, str):
        raise TypeError("names must be a sequence of parameter names, not a single string")
    for name in names:
        parametrize.register_parametrization(module, name, DropConnect(p))
    logger.info("weight drop p=%s on %s of %s", p, list(names), type(module).__name__)
    return module
