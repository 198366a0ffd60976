"""Triton kernels for the forget-mult recurrence c_t = f_t * c_{t-1} + (1 - f_t) * z_t on CUDA.

The same parallelisation as the CUDA kernel of salesforce/pytorch-qrnn (``torchqrnn/forget_mult.py``):
every (batch, hidden) column is independent, so each program owns a block of ``BLOCK`` of the
B*H columns and walks the T steps sequentially; the backward kernel walks them in reverse with
the recurrence written out in ``forget_mult.py``. Unlike pytorch-qrnn, ``f`` weights the previous
cell (the paper's convention), accumulation is fp32 whatever the input dtype (fp32/fp16/bf16),
and ``f``, ``z`` and the incoming gradient may be strided views (the chunks of the QRNN's gate
projection), so no ``.contiguous()`` copies are made.

This module imports Triton at the top: import it only through ``forget_mult.forget_mult``, which
does so lazily for CUDA inputs. ``scripts/bench/check_forget_mult_cuda.py`` checks it against the
reference on a GPU (or on CPU under ``TRITON_INTERPRET=1``).
"""
from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable


@triton.jit
def _forget_mult_fwd_kernel(
    F, Z, C0, C,  # f, z: (T, B, H) strided; c0: (B, H) contiguous; c: (T, B, H) contiguous
    T, N, H,  # N = B * H columns
    sf_t, sf_b, sf_h, sz_t, sz_b, sz_h,
    HAS_C0: tl.constexpr, BLOCK: tl.constexpr,
):
    cols = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)  # (BLOCK,) flat (b, h) indices
    mask = cols < N
    b = (cols // H).to(tl.int64)
    h = (cols % H).to(tl.int64)
    f_ptrs = F + b * sf_b + h * sf_h
    z_ptrs = Z + b * sz_b + h * sz_h
    c_ptrs = C + cols.to(tl.int64)
    if HAS_C0:
        c = tl.load(C0 + cols, mask=mask, other=0.0).to(tl.float32)
    else:
        c = tl.zeros([BLOCK], dtype=tl.float32)
    for _ in range(T):
        f = tl.load(f_ptrs, mask=mask, other=0.0).to(tl.float32)
        z = tl.load(z_ptrs, mask=mask, other=0.0).to(tl.float32)
        c = f * c + (1.0 - f) * z  # f == 1 keeps c exactly, f == 0 gives z exactly
        tl.store(c_ptrs, c.to(C.dtype.element_ty), mask=mask)
        f_ptrs += sf_t  # pointer arithmetic is 64-bit
        z_ptrs += sz_t
        c_ptrs += N


@triton.jit
def _forget_mult_bwd_kernel(
    F, Z, C0, C, G, DF, DZ, DC0,  # G strided (T, B, H); DF, DZ contiguous (T, B, H); DC0 fp32 (B, H)
    T, N, H,
    sf_t, sf_b, sf_h, sz_t, sz_b, sz_h, sg_t, sg_b, sg_h,
    HAS_C0: tl.constexpr, BLOCK: tl.constexpr,
):
    cols = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < N
    b = (cols // H).to(tl.int64)
    h = (cols % H).to(tl.int64)
    cols64 = cols.to(tl.int64)
    f_base = F + b * sf_b + h * sf_h
    z_base = Z + b * sz_b + h * sz_h
    g_base = G + b * sg_b + h * sg_h
    if HAS_C0:
        c0 = tl.load(C0 + cols, mask=mask, other=0.0).to(tl.float32)
    else:
        c0 = tl.zeros([BLOCK], dtype=tl.float32)
    dc = tl.zeros([BLOCK], dtype=tl.float32)  # gradient reaching c_t from later steps
    for i in range(T):
        t = (T - 1 - i).to(tl.int64)
        f = tl.load(f_base + t * sf_t, mask=mask, other=0.0).to(tl.float32)
        z = tl.load(z_base + t * sz_t, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(g_base + t * sg_t, mask=mask, other=0.0).to(tl.float32)
        # c_{t-1}: the saved output, or c0 at t == 0 (row 0 is read then and discarded)
        c_prev = tl.load(C + tl.maximum(t - 1, 0) * N + cols64, mask=mask, other=0.0).to(tl.float32)
        c_prev = tl.where(t > 0, c_prev, c0)
        dc = dc + g
        tl.store(DF + t * N + cols64, (dc * (c_prev - z)).to(DF.dtype.element_ty), mask=mask)
        tl.store(DZ + t * N + cols64, (dc * (1.0 - f)).to(DZ.dtype.element_ty), mask=mask)
        dc = dc * f
    tl.store(DC0 + cols, dc, mask=mask)


def _launch_config(n_columns: int):
    # small blocks keep enough programs in flight to fill the GPU at B * H ~ 3e4
    block = 128 if n_columns < (1 << 18) else 512
    return block, triton.cdiv(n_columns, block), 4


class ForgetMultTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, f: Tensor, z: Tensor, c0: Optional[Tensor]) -> Tensor:
        # f, z: (T, B, H); c0: (B, H) or None
        T, B, H = z.shape
        c = torch.empty((T, B, H), dtype=z.dtype, device=z.device)  # (T, B, H)
        has_c0 = c0 is not None
        c0_arg = c0.contiguous() if has_c0 else c
        if c.numel() > 0:
            block, n_programs, warps = _launch_config(B * H)
            _forget_mult_fwd_kernel[(n_programs,)](
                f, z, c0_arg, c, T, B * H, H, *f.stride(), *z.stride(),
                HAS_C0=has_c0, BLOCK=block, num_warps=warps,
            )
        ctx.has_c0 = has_c0
        ctx.save_for_backward(f, z, c0_arg if has_c0 else None, c)
        return c

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_c: Tensor):
        f, z, c0, c = ctx.saved_tensors
        T, B, H = z.shape
        df = torch.empty((T, B, H), dtype=f.dtype, device=f.device)
        dz = torch.empty((T, B, H), dtype=z.dtype, device=z.device)
        dc0 = torch.zeros((B, H), dtype=torch.float32, device=z.device)
        if c.numel() > 0:
            block, n_programs, warps = _launch_config(B * H)
            _forget_mult_bwd_kernel[(n_programs,)](
                f, z, c0 if ctx.has_c0 else c, c, grad_c, df, dz, dc0, T, B * H, H,
                *f.stride(), *z.stride(), *grad_c.stride(),
                HAS_C0=ctx.has_c0, BLOCK=block, num_warps=warps,
            )
        return df, dz, dc0.to(c0.dtype) if ctx.has_c0 else None


def forget_mult_triton(f: Tensor, z: Tensor, c0: Optional[Tensor] = None) -> Tensor:
    """Forget-mult with the Triton kernels; f, z: (T, B, H) on CUDA, c0: (B, H) or None."""
    if f.dim() != 3 or f.shape != z.shape:
        raise ValueError(f"expected f and z of one (T, B, H) shape, got {tuple(f.shape)}, {tuple(z.shape)}")
    if c0 is not None and c0.shape != z.shape[1:]:
        raise ValueError(f"expected c0 of shape {tuple(z.shape[1:])}, got {tuple(c0.shape)}")
    return ForgetMultTriton.apply(f, z, c0)
