"""One Quasi-Recurrent Neural Network layer (Bradbury et al., arXiv 1611.01576), as used for the
QRNN language models of Merity, Keskar and Socher (arXiv 1803.08240) via salesforce/pytorch-qrnn
(``torchqrnn/qrnn.py``) in salesforce/awd-lstm-lm.

    [Z; F; O]_t = W [x_t; x_{t-1}] + b            (x_{t-1} only for window 2)
    z = tanh(Z),  f = sigmoid(F),  o = sigmoid(O)
    c_t = f_t * c_{t-1} + (1 - f_t) * z_t          (forget_mult; "fo-pooling" with the output gate)
    h_t = o_t * c_t                                (h_t = c_t without the output gate, "f-pooling")

Differences from pytorch-qrnn, all deliberate:

* ``f`` weights the previous cell (the paper's convention); pytorch-qrnn's ``f`` weights the new
  candidate. Same model family; to load pytorch-qrnn weights, negate the F rows of ``linear``.
* The recurrent state is explicit: ``forward`` takes and returns it instead of keeping ``prevX`` in
  the module. It is a tuple ordered as ``state_names``: ``(c,)`` for window 1, ``(c, prev_x)`` for
  window 2, with ``c`` the last cell (B, H) and ``prev_x`` the last input (B, input_size), so the
  next BPTT window's first step sees the previous window's last token. The returned tensors are
  still attached to the graph; the caller detaches them between BPTT windows (as
  ``repackage_hidden`` does in awd-lstm-lm). ``None`` means zeros for both.
* Weight drop (DropConnect on ``linear.weight``, as awd-lstm-lm wraps the QRNN's linear in
  ``WeightDrop``) comes from ``weight_drop.apply_weight_drop``: one fresh mask per forward.
* Speed: the gates of all T steps and B streams come from one matrix product (through oneDNN on
  the CPU, ``onednn_linear.py``), and the recurrence from ``forget_mult.forget_mult`` (a Triton
  kernel on CUDA, one fused ``lerp`` per step on the CPU).

Zoneout (Krueger et al., arXiv 1606.01305) follows pytorch-qrnn, translated to our convention.
pytorch-qrnn multiplies its f by a Bernoulli(1 - zoneout) mask in training, so with probability
``zoneout`` its f is 0 and the unit keeps its previous value. With our f on the previous cell the
same event is f = 1, so here each f is set to exactly 1 with probability ``zoneout`` (the kept
units get no gradient through f, as in the original). At evaluation no noise is drawn and, as in
pytorch-qrnn (``F *= 1 - zoneout``) and the zoneout paper, f takes its expectation
``zoneout + (1 - zoneout) * f``; with ``zoneout = 0`` (awd-lstm-lm's setting) nothing changes.
"""
import logging
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from .forget_mult import forget_mult
from .onednn_linear import linear
from .weight_drop import apply_weight_drop

logger = logging.getLogger(__name__)

QRNNState = Tuple[Tensor, ...]  # (c,) or (c, prev_x): (B, H) and (B, input_size)


class QRNNLayer(nn.Module):
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        window: int = 1,
        output_gate: bool = True,
        zoneout: float = 0.0,
        weight_drop: float = 0.0,
    ):
        super().__init__()
        if window not in (1, 2):
            raise ValueError(f"QRNN window must be 1 or 2, got {window}")
        if not 0.0 <= zoneout <= 1.0:
            raise ValueError(f"zoneout must be in [0, 1], got {zoneout}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.window = window
        self.output_gate = output_gate
        self.zoneout = zoneout
        self.state_names = ("c",) if window == 1 else ("c", "prev_x")
        n_gates = 3 if output_gate else 2
        # rows [Z; F; O], columns [x_t; x_{t-1}]: pytorch-qrnn's layout, one matmul for all gates
        self.linear = nn.Linear(window * input_size, n_gates * hidden_size)
        apply_weight_drop(self.linear, ("weight",), weight_drop)

    def forward(self, x: Tensor, state: Optional[QRNNState] = None) -> Tuple[Tensor, QRNNState]:
        # x: (T, B, input_size) -> h: (T, B, hidden_size)
        B = x.shape[1]
        c0 = None if state is None else state[0]  # (B, H)
        if self.window == 2:
            prev_x = x.new_zeros(B, self.input_size) if state is None else state[1]  # (B, in)
            x_shifted = torch.cat([prev_x.unsqueeze(0), x[:-1]], dim=0)  # (T, B, in): x_{t-1}
            source = torch.cat([x, x_shifted], dim=-1)  # (T, B, 2 * in)
        else:
            source = x  # (T, B, in)

        # one product for all gates and steps; reads the (dropped) weight once: one mask per forward
        gates = linear(source, self.linear.weight, self.linear.bias)  # (T, B, n_gates * H)
        if self.output_gate:
            z, f, o = gates.chunk(3, dim=-1)  # each (T, B, H), strided views
        else:
            z, f = gates.chunk(2, dim=-1)
        z = torch.tanh(z)
        f = self._zoneout(torch.sigmoid(f))
        if c0 is not None and c0.dtype != z.dtype:  # e.g. a float32 state entering an autocast region
            c0 = c0.to(z.dtype)
        c = forget_mult(f, z, c0)  # (T, B, H)
        h = torch.sigmoid(o) * c if self.output_gate else c  # (T, B, H)

        new_state = (c[-1],) if self.window == 1 else (c[-1], x[-1])
        return h, new_state

    def _zoneout(self, f: Tensor) -> Tensor:
        # f: (T, B, H), weight on the previous cell
        if self.zoneout == 0.0:
            return f
        if self.training:
            keep_previous = torch.empty_like(f).bernoulli_(self.zoneout).bool()
            return f.masked_fill(keep_previous, 1.0)
        return torch.lerp(f, torch.ones_like(f), self.zoneout)  # zoneout + (1 - zoneout) * f

    def extra_repr(self) -> str:
        return (f"window={self.window}, output_gate={self.output_gate}, zoneout={self.zoneout}")
