"""One single-layer LSTM of the AWD-LSTM stack, with DropConnect on its hidden-to-hidden matrix.

salesforce/awd-lstm-lm model.py builds `nlayers` separate one-layer `nn.LSTM`s (so that sizes
can differ per layer and locked dropout can sit between them) and wraps each in `WeightDrop` on
`weight_hh_l0`. Here the DropConnect is a `torch.nn.utils.parametrize` parametrization, so the
cuDNN / MKL LSTM kernel still runs the whole window in one call.
"""
from typing import Optional, Tuple

from torch import Tensor, nn
from torch.nn.utils import parametrize

from .weight_drop import apply_weight_drop

LSTMState = Tuple[Tensor, Tensor]  # (h, c), each (B, H): batch first, like all stream state


class LSTMLayer(nn.Module):
    state_names = ("h", "c")

    def __init__(self, input_size: int, hidden_size: int, weight_drop: float = 0.0):
        super().__init__()
        self.hidden_size = hidden_size
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=1)
        apply_weight_drop(self.lstm, ("weight_hh_l0",), weight_drop)

    def forward(self, x: Tensor, state: Optional[LSTMState] = None) -> Tuple[Tensor, LSTMState]:
        # x: (T, B, input_size) -> output (T, B, hidden_size)
        hx = None if state is None else (state[0].unsqueeze(0), state[1].unsqueeze(0))
        # nn.LSTM reads the parametrized weight several times per call: draw one mask per forward
        with parametrize.cached():
            out, (h, c) = self.lstm(x, hx)
        return out, (h.squeeze(0), c.squeeze(0))
