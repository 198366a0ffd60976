"""Adam as TensorFlow's `tf.train.AdamOptimizer` computes it, with L2 in the gradient and, once
`start_averaging()` is called, a uniform running average of the iterates: the optimizer of
deepmind/lamb's Mogrifier LSTM recipes (Melis, Kočiský and Blunsom, arXiv 1909.01792). A plain
`torch.optim.Optimizer` (no fairseq import).

lamb's `--optimizer_type rmsprop` is TF's Adam with beta1 = 0 (lamb utils.py `get_optimizer`),
fed the gradient of `loss + l2_penalty * sum(w ** 2) / 2`, i.e. g + l2_penalty * w. The step,
with t counted from 1 and every parameter stepped at every t (TF keeps one beta power per
optimizer):

    m <- b1 m + (1 - b1) g            (m = g when b1 = 0: no first-moment state is kept)
    v <- b2 v + (1 - b2) g^2
    w <- w - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

TensorFlow adds eps to sqrt(v) before the bias correction ("epsilon hat"); torch's Adam adds it
to sqrt(v / (1 - b2^t)), a larger eps early in training. lamb's averaging (averaged.py, and
training.py's `take_sample` after every step once triggered) is NT-ASGD's: the average after n
steps since the switch is the mean of the n iterates those steps produced, so this class is
`NTASGD` (nt_asgd_optimizer.py) with Adam's step: averages, swapping and the state dict are its.
"""
import math
from typing import Tuple

import torch

from .nt_asgd_optimizer import NTASGD


class AveragedAdam(NTASGD):
    """Args: params, lr, betas (lamb's rmsprop: (0, rmsprop_beta2)), eps (TF's epsilon hat),
    weight_decay (L2 added to the gradient)."""

    def __init__(
        self, params, lr: float, betas: Tuple[float, float] = (0.0, 0.999), eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        if not all(0.0 <= b < 1.0 for b in betas) or len(betas) != 2:
            raise ValueError(f"invalid betas: {betas}")
        if eps < 0.0:
            raise ValueError(f"invalid eps: {eps}")
        super().__init__(params, lr=lr, weight_decay=weight_decay)
        self.defaults.update(betas=tuple(betas), eps=eps)
        for group in self.param_groups:
            group.setdefault("betas", tuple(betas))
            group.setdefault("eps", eps)

    @torch.no_grad()
    def step(self, closure=None):
        if self.swapped:
            raise RuntimeError("AveragedAdam.step() while averaged weights are swapped in; swap back first")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, weight_decay, eps = float(group["lr"]), group["weight_decay"], group["eps"]
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AveragedAdam does not support sparse gradients")
                grad = p.grad if weight_decay == 0 else p.grad.add(p, alpha=weight_decay)
                state = self.state[p]
                if "step" not in state:
                    state["step"] = 0
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    if beta1 > 0.0:
                        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"]
                first = grad
                if beta1 > 0.0:
                    first = state["exp_avg"].mul_(beta1).add_(grad, alpha=1.0 - beta1)
                second = state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                step_size = lr * math.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
                p.addcdiv_(first, second.sqrt().add_(eps), value=-step_size)
        self._add_iterate_to_average()
        return loss
