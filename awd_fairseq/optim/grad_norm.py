"""Gradient scaling and gradient-norm clipping in multi-tensor operations, for the plugin's fairseq
optimizers (their `multiply_grads` and `clip_grad_norm`).

fairseq's `FairseqOptimizer.clip_grad_norm` (utils.clip_grad_norm_, without NVIDIA's apex) takes one
norm per gradient tensor, a detach each, then stacks them: about 2 ops per parameter plus 6, and on a
GPU as many kernel launches. This computes the same quantities with `torch._foreach_norm` (one
multi-tensor kernel) and scales with one `torch._foreach_mul_`:

    total = || (||g_1||, ..., ||g_n||) ||_2   (in float32)
    g_i  <- g_i * min(1, max_norm / (total + 1e-6))   when max_norm > 0

returning `total` unclipped, as fairseq does (and torch.nn.utils.clip_grad_norm_); `multiply_grads`
is fairseq's `_foreach_mul_` without a detached view of every gradient first. Parameters marked
`expert` (fairseq's mixture-of-experts layers) are scaled but left out of the norm, as fairseq does.
Each per-tensor norm is the one `torch.linalg.vector_norm` gives on the CPU; on a GPU the fused
kernel may sum in another order (a difference in the last bit of the norm).
"""
from typing import Callable, Iterable, List, Optional

import torch
from torch import Tensor


def _norms(grads: List[Tensor]) -> List[Tensor]:
    if all(g.dtype == torch.float32 for g in grads):
        return list(torch._foreach_norm(grads, 2.0))
    return list(torch._foreach_norm(grads, 2.0, dtype=torch.float32))  # fp16 norms would overflow


def _grads_of(params: Iterable[Tensor]) -> List[Tensor]:
    grads = [p.grad for p in params if p.grad is not None]
    if any(g.requires_grad for g in grads):  # a graph through the gradients (create_graph): leave it
        grads = [g.detach() for g in grads]
    return grads


def multiply_grads(params: Iterable[Tensor], c) -> bool:
    """grads *= c in one multi-tensor op; False (nothing done) where fairseq's grouping is needed:
    sparse gradients, or gradients on several devices or of several dtypes."""
    grads = _grads_of(params)
    if not grads:
        return True
    if any(g.is_sparse for g in grads) or len({(g.device, g.dtype) for g in grads}) > 1:
        return False
    torch._foreach_mul_(grads, c.to(grads[0].device) if torch.is_tensor(c) else c)
    return True


def clip_grad_norm(params: Iterable[Tensor], max_norm: float,
                   aggregate_norm_fn: Optional[Callable[[Tensor], Tensor]] = None) -> Tensor:
    params = [p for p in params if p is not None and p.grad is not None]
    grads = _grads_of(p for p in params if not hasattr(p, "expert"))
    expert_grads = _grads_of(p for p in params if hasattr(p, "expert"))
    if not grads:
        return params[0].new_tensor(0.0) if params else torch.tensor(0.0)
    norms = _norms(grads)
    total = norms[0] if len(norms) == 1 else torch.linalg.vector_norm(torch.stack(norms))
    if aggregate_norm_fn is not None:
        total = aggregate_norm_fn(total)
    if max_norm > 0:
        coefficient = (float(max_norm) / (total + 1e-6)).clamp_(max=1)
        torch._foreach_mul_(grads + expert_grads, coefficient)
    return total
