"""Dynamic evaluation: the model keeps adapting its weights to the text it has already scored
(Krause, Kahembwe, Murray and Renals, "Dynamic Evaluation of Neural Sequence Models", arXiv
1709.07432, ICML 2018, sec. 5 "RMS with decay to the global prior"; code: benkrause/dynamic-evaluation
`dynamiceval.py`). Plain torch; the fairseq task is tasks/dynamic_eval_lm.py.

1. Gradient statistics, once per model, on the training split (`GradientStatistics`): for each
   segment the gradient g of its mean cross-entropy, then per parameter, elementwise,

       MS = sqrt(mean over segments of g^2)
       decrate = MS / (mean over parameter tensors of mean(MS))

2. After each scored segment of the evaluated split, with g that segment's gradient
   (`DynamicEvalUpdate.step`):

       theta <- theta + lambda * min(decrate, 1 / lambda) * (theta_0 - theta) - eta * g / (MS + epsilon)

   theta_0 are the weights the update was built on (the checkpoint's); `reset()` brings them
   back, so that each split starts again from theta_0. As in the reference, decrate is scaled
   first and clipped at 1 / lambda afterwards, so that the decay never overshoots theta_0.

The update is two fused multi-tensor passes over all parameters (`torch._foreach_lerp_` for the
decay, `torch._foreach_addcdiv_` for the gradient step) instead of the reference's Python loop
of ~8 elementwise passes per parameter; both terms are computed from the pre-update theta
(the gradient term does not depend on theta), so the result is the same up to rounding.
"""
import logging
import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .stream_state import StreamState

logger = logging.getLogger(__name__)

Grads = Sequence[Optional[Tensor]]


def _dense(params: Sequence[Tensor], grads: Grads) -> List[Tensor]:
    """Gradients with `None` (a parameter the loss does not reach) read as zeros."""
    if len(grads) != len(params):
        raise ValueError(f"{len(grads)} gradients for {len(params)} parameters")
    return [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, grads)]


class GradientStatistics:
    """Accumulates sum of g^2 over segments; `ms()` is sqrt(mean of g^2) per parameter."""

    def __init__(self, params: Sequence[Tensor]):
        self.params = list(params)
        self.sum_sq = [torch.zeros_like(p, memory_format=torch.contiguous_format).detach() for p in self.params]
        self.segments = 0

    def add(self, grads: Grads) -> None:
        grads = _dense(self.params, grads)
        torch._foreach_addcmul_(self.sum_sq, grads, grads)
        self.segments += 1

    def ms(self) -> List[Tensor]:
        if self.segments == 0:
            raise ValueError("no segment seen: the gradient statistics need at least one training segment")
        return torch._foreach_sqrt(torch._foreach_div(self.sum_sq, float(self.segments)))


def gradient_statistics(
    log_probs: Callable[[Tensor, Tensor, StreamState], Tensor], params: Sequence[Tensor], data: Tensor,
    windows: Sequence[Tuple[int, int]], device=None,
) -> Tuple[List[Tensor], int]:
    """(MS per parameter, segments) over `data` (N, B) contiguous streams cut into `windows`
    (start, length), the state carried and detached from one to the next: the gradient of each
    segment's mean cross-entropy, as dynamiceval.py `gradstat`. `log_probs(src (B, T), target
    (B, T), state)` gives log p(target) (B, T) with the current weights."""
    stats, state = GradientStatistics(params), StreamState()
    for i, (start, length) in enumerate(windows):
        src = data[start:start + length].t().to(device)  # (B, T)
        tgt = data[start + 1:start + 1 + length].t().to(device)
        with state.window(start, start + length), torch.enable_grad():
            stats.add(torch.autograd.grad(-log_probs(src, tgt, state).mean(), list(params), allow_unused=True))
        if (i + 1) % 1000 == 0:
            logger.info("gradient statistics: %d / %d segments", i + 1, len(windows))
    return stats.ms(), stats.segments


def decay_rates(ms: Sequence[Tensor]) -> List[Tensor]:
    """decrate = MS / (mean over tensors of mean(MS)): unclipped (the clip depends on lambda)."""
    if not ms:
        return []
    global_mean = torch.stack([m.float().mean() for m in ms]).mean()
    if not torch.isfinite(global_mean) or global_mean.item() == 0.0:
        raise ValueError("the gradient statistics are all zero (or not finite): no decay rate can be derived")
    return [m / global_mean.to(m.dtype) for m in ms]


class DynamicEvalUpdate:
    """The update rule of Krause et al. (2018) on a fixed list of parameters (updated in place).

    Args:
        params: the parameters to adapt (each tensor once: tied weights listed once).
        ms: MS per parameter (`GradientStatistics.ms()`), same shapes.
        lr: eta; lambdah: lambda; epsilon: added to MS in the gradient step.
    """

    def __init__(self, params: Sequence[Tensor], ms: Sequence[Tensor], lr: float, lambdah: float,
                 epsilon: float = 2e-5):
        self.params = list(params)
        if len(ms) != len(self.params) or any(m.shape != p.shape for m, p in zip(ms, self.params)):
            raise ValueError("the gradient statistics do not match the model's parameters (shapes differ)")
        with torch.no_grad():
            self.theta0 = [p.detach().clone() for p in self.params]
            self.ms = [m.to(device=p.device, dtype=p.dtype) for m, p in zip(ms, self.params)]
            self.decrate = decay_rates(self.ms)
        self.configure(lr, lambdah, epsilon)

    def configure(self, lr: float, lambdah: float, epsilon: Optional[float] = None) -> None:
        """Set eta, lambda (and epsilon) without re-reading theta_0 or the statistics."""
        if lr < 0 or lambdah < 0:
            raise ValueError(f"dynamic evaluation needs eta >= 0 and lambda >= 0, got eta={lr}, lambda={lambdah}")
        self.lr, self.lambdah = float(lr), float(lambdah)
        if epsilon is not None:
            if epsilon <= 0:
                raise ValueError(f"epsilon must be > 0, got {epsilon}")
            self.epsilon = float(epsilon)
        with torch.no_grad():
            clip = 1.0 / self.lambdah if self.lambdah > 0 else math.inf
            # lambda * min(decrate, 1 / lambda): the fraction of (theta_0 - theta) restored per segment
            self.decay = torch._foreach_mul(torch._foreach_clamp_max(self.decrate, clip), self.lambdah)
            self.denominator = torch._foreach_add(self.ms, self.epsilon)  # MS + epsilon

    @torch.no_grad()
    def step(self, grads: Grads) -> None:
        """One update from the gradient of the segment just scored."""
        grads = _dense(self.params, grads)
        torch._foreach_lerp_(self.params, self.theta0, self.decay)  # theta += decay * (theta_0 - theta)
        torch._foreach_addcdiv_(self.params, grads, self.denominator, value=-self.lr)

    @torch.no_grad()
    def reset(self) -> None:
        """Back to theta_0 (before each split)."""
        torch._foreach_copy_(self.params, self.theta0)


# -- cache: tensors, lists, strings and ints only, so torch.load(weights_only=True) reads it --


def statistics_state(names: Sequence[str], ms: Sequence[Tensor], segments: int, key: str) -> Dict:
    return {"key": key, "names": list(names), "ms": [m.detach().cpu() for m in ms], "segments": int(segments)}


def save_statistics(path: str, names: Sequence[str], ms: Sequence[Tensor], segments: int, key: str) -> None:
    torch.save(statistics_state(names, ms, segments, key), path)


def load_statistics(path: str, names: Sequence[str], key: str) -> Optional[Tuple[List[Tensor], int]]:
    """(MS, segments) from `path` if it was computed under `key` for parameters `names`; else None."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return None
    if state.get("key") != key or state.get("names") != list(names):
        logger.info("gradient statistics in %s are for another model or setting: recomputing", path)
        return None
    return state["ms"], int(state["segments"])


# -- the reference code's other hyper-parameter scales ------------------------------------------

# benkrause/dynamic-evaluation before it followed the paper's equations (its `--oldhyper`; also
# zihangdai/mos dynamiceval.py by default): MS = sqrt(sum of g^2) over the S statistics segments,
# and decrate = MS / (sum over the P parameter tensors of mean(MS)). zihangdai/mos `--ms`: MS from
# the mean, the normaliser still summed. Written in the paper's terms, the same update has
# eta / sqrt(S), lambda / P and epsilon / sqrt(S) (oldhyper), or lambda / P (mos_ms).
HYPER_SCALES = ("paper", "oldhyper", "mos_ms")


def paper_scale(scale: str, lr: float, lambdah: float, epsilon: float, segments: int, tensors: int):
    """(eta, lambda, epsilon) in the paper's scale for rates given in `scale` (HYPER_SCALES)."""
    if scale == "paper":
        return lr, lambdah, epsilon
    if scale == "oldhyper":
        root = math.sqrt(segments)
        return lr / root, lambdah / tensors, epsilon / root
    if scale == "mos_ms":
        return lr, lambdah / tensors, epsilon
    raise ValueError(f"unknown hyper-parameter scale {scale!r}: choose from {', '.join(HYPER_SCALES)}")
