"""The maths of one Mogrifier LSTM layer over a BPTT window, as plain functions (no modules, no
fairseq) that TorchScript can compile: Melis, Kočiský and Blunsom, "Mogrifier LSTM" (ICLR 2020,
arXiv 1909.01792), eq. 1-2, as deepmind/lamb tiled_lstm.py runs it (`TiledLSTMCell.__call__` and
`_do_feature_masking`).

Before every LSTM step the input x (in,) and the previous state h (H,) gate each other for r
rounds, round k = 0, 1, ... (the paper's i = k + 1):

    k even:  x <- 2 sigmoid(x_side_k(h)) * x        # Q^i in the paper (odd i)
    k odd:   h <- 2 sigmoid(h_side_k(x)) * h        # R^i (even i)

where each map is `y @ W + b` (full rank, W (from, to)) or `(y @ A) @ B + b` (rank k: A (from, k),
B (k, to)), as lamb's `utils.linear` / `low_rank_factorization`. The ordinary LSTM step then reads
the mogrified x and h. In lamb the state dropout is applied to h *before* the rounds and the
carried state stays undropped; the cell caps the input gate at 1 - f (`cap_input_gate`):

    i, f, g, o = split(x W_ih^T + h W_hh^T + b)     # torch's gate order (lamb's tiles: j, o, f, i)
    c' = sigmoid(f) c + min(sigmoid(i), 1 - sigmoid(f)) tanh(g)     (capped)
    c' = sigmoid(f) c + sigmoid(i) tanh(g)                          (uncapped: torch's LSTM)
    h' = sigmoid(o) tanh(c')

`factors` holds each round's matrices in order (one per round at full rank, two at low rank) in
matmul layout (from, to); `biases` one vector per round, so `len(biases)` is r. With r = 0 the
input-side product x W_ih^T + b of the whole window is one matrix product before the loop; with
r > 0 every factor reads a mogrified x, so nothing can be taken out of the loop.
"""
from typing import List, Optional, Tuple

import torch
from torch import Tensor


def mogrify(x: Tensor, h: Tensor, factors: List[Tensor], biases: List[Tensor]) -> Tuple[Tensor, Tensor]:
    """x (B, in), h (B, H) -> the mogrified (x, h); round k gates x if k is even, else h."""
    per_round = len(factors) // max(len(biases), 1)  # 1: full rank, 2: low rank
    for k in range(len(biases)):
        source = h if k % 2 == 0 else x
        if per_round == 2:
            pre = torch.addmm(biases[k], torch.mm(source, factors[2 * k]), factors[2 * k + 1])
        else:
            pre = torch.addmm(biases[k], source, factors[k])
        gate = torch.sigmoid(pre) * 2.0
        if k % 2 == 0:
            x = gate * x
        else:
            h = gate * h
    return x, h


def lstm_cell(gates: Tensor, c: Tensor, capped: bool) -> Tuple[Tensor, Tensor]:
    """gates (B, 4H) in torch's order (i, f, g, o), c (B, H) -> (h', c')."""
    i, f, g, o = gates.chunk(4, 1)
    i = torch.sigmoid(i)
    f = torch.sigmoid(f)
    if capped:
        i = torch.minimum(i, 1.0 - f)
    c = f * c + i * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def step(
    x: Tensor, h: Tensor, c: Tensor, state_mask: Optional[Tensor], factors: List[Tensor], biases: List[Tensor],
    w_x_t: Tensor, w_hh_t: Tensor, bias: Tensor, capped: bool, fused: bool,
) -> Tuple[Tensor, Tensor]:
    """One time step: x (B, in), h and c (B, H), bias (4H,). `fused`: one product of [x, h] with
    w_x_t = [W_ih^T; W_hh^T] (in + H, 4H); else w_x_t = W_ih^T (in, 4H) and w_hh_t (H, 4H), two."""
    hd = h if state_mask is None else h * state_mask
    x, hd = mogrify(x, hd, factors, biases)
    if fused:
        gates = torch.addmm(bias, torch.cat([x, hd], 1), w_x_t)
    else:
        gates = torch.addmm(torch.addmm(bias, x, w_x_t), hd, w_hh_t)
    return lstm_cell(gates, c, capped)


def input_weight(w_ih_t: Tensor, w_hh_t: Tensor, fused: bool) -> Tensor:
    """`step`'s w_x_t: stacked once per window, not once per step, when fused."""
    return torch.cat([w_ih_t, w_hh_t], 0) if fused else w_ih_t


def window(
    x: Tensor, h: Tensor, c: Tensor, state_mask: Optional[Tensor], factors: List[Tensor], biases: List[Tensor],
    w_ih_t: Tensor, w_hh_t: Tensor, bias: Tensor, capped: bool, fused: bool,
) -> Tuple[Tensor, Tensor, Tensor]:
    """x (T, B, in), h and c (B, H) -> (outputs (T, B, H), h, c); w_ih_t (in, 4H), w_hh_t (H, 4H).
    The same mask (B, H), or None, multiplies h at every step of the window."""
    outputs: List[Tensor] = []
    if len(biases) == 0:  # a plain LSTM: the input side of every step in one product
        steps, batch = x.size(0), x.size(1)
        projected = torch.addmm(bias, x.reshape(steps * batch, x.size(2)), w_ih_t).view(steps, batch, -1)
        for t in range(steps):
            hd = h if state_mask is None else h * state_mask
            h, c = lstm_cell(torch.addmm(projected[t], hd, w_hh_t), c, capped)
            outputs.append(h)
    else:
        w_x_t = input_weight(w_ih_t, w_hh_t, fused)
        for t in range(x.size(0)):
            h, c = step(x[t], h, c, state_mask, factors, biases, w_x_t, w_hh_t, bias, capped, fused)
            outputs.append(h)
    return torch.stack(outputs), h, c
