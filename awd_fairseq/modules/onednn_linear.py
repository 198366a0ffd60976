"""``F.linear`` through oneDNN on the CPU, forward and backward: the QRNN's gate projection.

On the CPU, PyTorch runs float32 ``F.linear`` / ``mm`` through MKL's sgemm, which takes a generic
code path on AMD processors; oneDNN's inner-product primitive (the library ``nn.LSTM`` already
uses on the CPU) is faster there (docs/qrnn.md gives the figures and the command). The three
products of a linear layer's forward and backward all go through it; where oneDNN is missing, the
dtype is not float32 or the tensors are not on the CPU, :func:`linear` is ``F.linear``. Results
equal ``F.linear``'s up to float32 summation order. ``AWD_FAIRSEQ_ONEDNN_LINEAR=0`` turns it off.

The one private API: ``torch.ops.mkldnn._linear_pointwise`` (the op TorchInductor emits for CPU
linears), called in :func:`_onednn` alone. If a torch release removes or changes it, the probe
:func:`onednn_linear_available` logs a warning and everything falls back to ``F.linear``, and
tests/test_qrnn_layer.py's ``test_the_private_onednn_op_still_exists`` fails.
"""
import logging
import os
from functools import lru_cache
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

logger = logging.getLogger(__name__)


@lru_cache(maxsize=None)
def onednn_linear_available() -> bool:
    if os.environ.get("AWD_FAIRSEQ_ONEDNN_LINEAR", "1") == "0" or not torch.backends.mkldnn.is_available():
        return False
    try:
        x, w, b = torch.randn(3, 5), torch.randn(4, 5), torch.randn(4)
        ok = torch.allclose(_onednn(x, w, b), F.linear(x, w, b), atol=1e-5)
    except (AttributeError, RuntimeError) as e:  # op missing or changed, or oneDNN refuses this CPU
        logger.warning("oneDNN linear unavailable (%s): the QRNN's gate projection uses F.linear", e)
        return False
    return ok


def _onednn(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """x (M, in) @ weight (out, in).T + bias through oneDNN: the only use of the private op."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        # x: (M, in) contiguous; weight: (out, in); bias: (out,) or None -> (M, out)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()  # (M, out)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn(grad, weight.t().contiguous(), None)  # (M, out) x (out, in)
        if ctx.needs_input_grad[1]:
            grad_w = _onednn(grad.t().contiguous(), x.t().contiguous(), None)  # (out, M) x (M, in)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(0)
        return grad_x, grad_w, grad_b


def linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """``F.linear(x, weight, bias)`` for x (..., in), with oneDNN for float32 CPU tensors."""
    tensors = (x, weight) if bias is None else (x, weight, bias)
    if not (
        all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
        and x.dim() >= 1
        and onednn_linear_available()
    ):
        return F.linear(x, weight, bias)
    flat = x.reshape(-1, x.shape[-1]).contiguous()  # (M, in)
    return OneDNNLinear.apply(flat, weight, bias).view(*x.shape[:-1], weight.shape[0])
