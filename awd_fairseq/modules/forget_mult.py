"""The QRNN's forget-mult recurrence ("f-pooling", Bradbury et al., arXiv 1611.01576, eq. 3-4).

    c_t = f_t * c_{t-1} + (1 - f_t) * z_t,        t = 1..T,  c_0 given (zeros by default)

Convention: ``f`` weights the PREVIOUS cell, as in the paper. salesforce/pytorch-qrnn
(``torchqrnn/forget_mult.py``) writes the same recurrence as ``h_t = f_t * x_t + (1 - f_t) * h_{t-1}``,
i.e. its ``f`` weights the NEW candidate; the two are the same up to relabelling ``f -> 1 - f``
(equivalently, negating the forget-gate rows of the gate projection, since
``1 - sigmoid(a) = sigmoid(-a)``). Keep this in mind when porting pytorch-qrnn weights.

All functions take time-major ``f, z: (T, B, H)`` (any trailing shape works for the pure-torch
path), an optional ``c0: (B, H)``, and return ``c: (T, B, H)``.

* :func:`forget_mult_reference`: the recurrence as a plain loop, differentiated by autograd.
* :func:`forget_mult_torch`: the CPU path, and the fallback for any device and dtype: one fused
  ``torch.lerp`` per step forward and the reverse recurrence below backward, so no autograd graph
  grows with T.
* ``forget_mult_triton`` (``forget_mult_triton.py``, imported only for CUDA inputs when Triton
  is installed): one program per block of B*H columns, sequential over T, fp32 accumulation.
* :func:`forget_mult`: picks Triton on CUDA, else the pure-torch path.

Why a sequential loop and not a parallel scan on the CPU: the recurrence is memory bound; every
scan formulation reads and writes the (T, B, H) tensors several times where the sequential pass
reads f and z once, and the log-space and cumulative-product forms divide by products of f that
underflow for f near 0. The measured alternatives (scans, pytorch-qrnn's loop, a compiled C
kernel, which did not pay end to end) are in docs/qrnn.md and docs/benchmarks.md.

Backward (exact, no autograd graph through the loop): with dc_t the total gradient reaching c_t,

    dc_t     = g_t + f_{t+1} * dc_{t+1}         (dc_{T+1} = 0)
    df_t     = dc_t * (c_{t-1} - z_t)
    dz_t     = dc_t * (1 - f_t)
    dc_0     = f_1 * dc_1

Extremes are exact: ``lerp`` returns ``z`` for f == 0 and ``c_{t-1}`` for f == 1 bit for bit
(torch evaluates it from the nearer end), and nothing divides or takes logarithms.
"""
import importlib.util
import logging
from functools import lru_cache
from typing import Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

logger = logging.getLogger(__name__)


def forget_mult_reference(f: Tensor, z: Tensor, c0: Optional[Tensor] = None) -> Tensor:
    """c_t = f_t * c_{t-1} + (1 - f_t) * z_t as a Python loop; autograd gives the gradients."""
    # f, z: (T, B, H); c0: (B, H) or None (zeros)
    c = torch.zeros_like(z[0]) if c0 is None else c0
    cells = []
    # iterating a tensor unbinds it, whose backward is one stack; indexing f[t] instead would
    # make autograd build a full-size zero gradient per step (10-100x slower backward)
    for f_t, z_t in zip(f, z):
        c = f_t * c + (1 - f_t) * z_t  # (B, H)
        cells.append(c)
    return torch.stack(cells)  # (T, B, H)


class ForgetMultTorch(torch.autograd.Function):
    """Fused per-step forward and the exact reverse recurrence backward (module docstring)."""

    @staticmethod
    def forward(ctx, f: Tensor, z: Tensor, c0: Tensor) -> Tensor:
        # f, z: (T, B, H), any strides (e.g. chunks of the gate projection); c0: (B, H)
        c = torch.empty(z.shape, dtype=z.dtype, device=z.device)  # (T, B, H), contiguous
        prev = c0
        for t in range(z.shape[0]):
            # lerp(z, prev, f) = z + f * (prev - z) = f * prev + (1 - f) * z
            torch.lerp(z[t], prev, f[t], out=c[t])
            prev = c[t]
        ctx.save_for_backward(f, z, c0, c)
        return c

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_c: Tensor):
        f, z, c0, c = ctx.saved_tensors
        T = f.shape[0]
        df = torch.empty(f.shape, dtype=f.dtype, device=f.device)  # (T, B, H)
        dz = torch.empty(z.shape, dtype=z.dtype, device=z.device)  # (T, B, H)
        if T == 0:
            return df, dz, torch.zeros_like(c0)
        # two (B, H) buffers for the running dc_t: the reverse scan never leaves cache
        dc, dc_prev = torch.empty_like(c0), torch.empty_like(c0)
        dc.copy_(grad_c[T - 1])
        zero = torch.zeros_like(c0)
        for t in range(T - 1, -1, -1):
            # lerp(dc, 0, f) = dc * (1 - f), computed as 0 - (0 - dc) * (1 - f) when f >= 0.5,
            # so no cancellation for f near 1 (dc - dc * f would lose its digits there)
            torch.lerp(dc, zero, f[t], out=dz[t])
            torch.sub(c[t - 1] if t > 0 else c0, z[t], out=df[t]).mul_(dc)
            if t > 0:
                torch.addcmul(grad_c[t - 1], f[t], dc, out=dc_prev)  # dc_{t-1}
                dc, dc_prev = dc_prev, dc
        dc0 = torch.mul(f[0], dc) if ctx.needs_input_grad[2] else None
        return df, dz, dc0


def forget_mult_torch(f: Tensor, z: Tensor, c0: Optional[Tensor] = None) -> Tensor:
    """Fast pure-torch forget-mult (any device); same result and gradients as the reference."""
    # f, z: (T, B, H); c0: (B, H) or None -> c: (T, B, H)
    if c0 is None:
        c0 = z.new_zeros(z.shape[1:])
    return ForgetMultTorch.apply(f, z, c0)


_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # the kernels accumulate in fp32


@lru_cache(maxsize=None)
def _triton_installed() -> bool:
    installed = importlib.util.find_spec("triton") is not None
    if not installed:
        logger.warning("Triton is not installed: forget_mult on CUDA falls back to the pure-torch path")
    return installed


def forget_mult(f: Tensor, z: Tensor, c0: Optional[Tensor] = None) -> Tensor:
    """c_t = f_t * c_{t-1} + (1 - f_t) * z_t with the fastest implementation for the inputs.

    Args:
        f: (T, B, H) forget gates in [0, 1], the weight on the previous cell.
        z: (T, B, H) candidates.
        c0: (B, H) initial cell, zeros when None.

    Returns:
        c: (T, B, H), the cell after every step; ``c[-1]`` is the state to carry.
    """
    usable = f.shape == z.shape and f.dtype == z.dtype and f.dim() >= 1
    if c0 is not None:
        usable = usable and c0.shape == z.shape[1:] and c0.dtype == z.dtype
    if not usable:
        return forget_mult_reference(f, z, c0)
    if f.dim() == 3 and f.is_cuda and f.dtype in _TRITON_DTYPES and _triton_installed():
        from .forget_mult_triton import forget_mult_triton  # lazy: imports triton

        return forget_mult_triton(f, z, c0)
    return forget_mult_torch(f, z, c0)
