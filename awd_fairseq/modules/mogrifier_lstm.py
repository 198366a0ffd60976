"""One Mogrifier LSTM layer: Melis, Kočiský and Blunsom, "Mogrifier LSTM" (ICLR 2020, arXiv
1909.01792), after deepmind/lamb tiled_lstm.py (`TiledLSTMCell` with `feature_mask_rounds` /
`feature_mask_rank`) and cell.py (`build_cell`: its initialisers and per-layer state dropout).

A layer maps `(x (T, B, in), (h, c) each (B, H)) -> (y (T, B, H), (h, c))`, like the plugin's
LSTMLayer, so the recurrent decoder stacks it unchanged. The maths is in mogrifier_step.py; this
module owns the parameters and the per-window randomness:

* state dropout (lamb's `state_dropout`, a `Dropout(share_mask=True)` per layer): one mask per
  stream and window, drawn at the start of `forward` and multiplied into h before the rounds at
  every step; the carried state is not dropped;
* DropConnect on W_hh (the AWD-LSTM's weight drop, `--wdrop`), one mask per window.

The step loop runs one of three ways (`step=`), each giving the same numbers: "eager" (a Python
loop), "script" (the whole window compiled by TorchScript: no Python between steps) or "compile"
(a Python loop over a `torch.compile`d step, which needs a C++ compiler on the CPU). Neither
compiler is touched before a layer first runs with that choice. Parameters are initialised as
lamb initialises them (truncated normals cut at two standard deviations).
"""
import functools
import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from . import mogrifier_step
from .weight_drop import drop_connect

STEP_CHOICES = ("eager", "script", "compile")
LSTMState = Tuple[Tensor, Tensor]  # (h, c), each (B, H)


@functools.lru_cache(maxsize=None)
def window_function(kind: str):
    """The `mogrifier_step.window` implementation called `kind`, built on first use."""
    if kind == "eager":
        return mogrifier_step.window
    if kind == "script":
        return torch.jit.script(mogrifier_step.window)
    if kind == "compile":
        return _compiled_window(torch.compile(mogrifier_step.step))
    raise ValueError(f"--mogrifier-step must be one of {', '.join(STEP_CHOICES)}, got {kind!r}")


def _compiled_window(compiled_step):
    def run(x, h, c, state_mask, factors, biases, w_ih_t, w_hh_t, bias, capped: bool, fused: bool):
        if not biases:  # no rounds: the plain LSTM loop, input side hoisted
            return mogrifier_step.window(x, h, c, state_mask, factors, biases, w_ih_t, w_hh_t, bias, capped, fused)
        w_x_t = mogrifier_step.input_weight(w_ih_t, w_hh_t, fused)
        outputs = []
        for t in range(x.size(0)):
            h, c = compiled_step(x[t], h, c, state_mask, factors, biases, w_x_t, w_hh_t, bias, capped, fused)
            outputs.append(h)
        return torch.stack(outputs), h, c

    return run


def truncated_normal_(tensor: Tensor, std: float, mean: float = 0.0) -> Tensor:
    """TensorFlow's `truncated_normal`: N(mean, std) redrawn outside two standard deviations."""
    return nn.init.trunc_normal_(tensor, mean, std, mean - 2 * std, mean + 2 * std)


class MogrifierLSTMLayer(nn.Module):
    """`rounds` mogrifier rounds (0: an LSTM) of rank `rank` (0: full-rank matrices) around an
    LSTM cell of `hidden_size` units; `capped_input_gate` is lamb's `cap_input_gate`;
    `forget_bias` the mean of the forget gate's initial bias (lamb's `forget_bias`)."""

    state_names = ("h", "c")

    def __init__(
        self, input_size: int, hidden_size: int, rounds: int = 5, rank: int = 84, state_dropout: float = 0.0,
        weight_drop: float = 0.0, capped_input_gate: bool = True, forget_bias: float = 1.0,
        fused_gates: bool = True, step: str = "script",
    ):
        super().__init__()
        if rounds < 0 or rank < 0:
            raise ValueError(f"--mogrifier-rounds and --mogrifier-rank must be >= 0, got {rounds} and {rank}")
        for name, p in (("--state-dropout", state_dropout), ("--wdrop", weight_drop)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} {p} is outside [0, 1)")
        if step not in STEP_CHOICES:
            raise ValueError(f"--mogrifier-step must be one of {', '.join(STEP_CHOICES)}, got {step!r}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.rounds, self.rank = rounds, rank
        self.state_dropout, self.weight_drop = state_dropout, weight_drop
        self.capped_input_gate, self.forget_bias = capped_input_gate, forget_bias
        self.fused_gates, self.step = fused_gates, step
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))  # torch's layout and gate order
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(4 * hidden_size))
        self.factors = nn.ParameterList()  # per round: W (from, to), or A (from, rank) and B (rank, to)
        self.round_biases = nn.ParameterList()  # per round: (to,)
        for k in range(rounds):
            source, target = self.round_sizes(k)
            shapes = [(source, target)] if rank == 0 else [(source, rank), (rank, target)]
            self.factors.extend(nn.Parameter(torch.empty(shape)) for shape in shapes)
            self.round_biases.append(nn.Parameter(torch.empty(target)))
        self.reset_parameters()

    def round_sizes(self, k: int) -> Tuple[int, int]:
        """(from, to) of round k's map: h -> x-sized for even k, x -> h-sized for odd k."""
        return (self.hidden_size, self.input_size) if k % 2 == 0 else (self.input_size, self.hidden_size)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """lamb's initialisers: the cell's matrices and biases `variance_scaling(fan_in, truncated
        normal)` (std sqrt(1.3 / fan_in) before truncation; a bias's fan-in is its length), the
        forget bias around `forget_bias`; a low-rank round's factors std (1 / (fan_in rank)) ** 1/4
        with zero biases (`utils.make_low_rank_factorization_initializer`); a full-rank round's
        matrix as the cell's, zero bias."""
        hidden = self.hidden_size
        truncated_normal_(self.weight_ih, math.sqrt(1.3 / self.input_size))
        truncated_normal_(self.weight_hh, math.sqrt(1.3 / hidden))
        truncated_normal_(self.bias, math.sqrt(1.3 / hidden))
        truncated_normal_(self.bias[hidden : 2 * hidden], math.sqrt(1.3 / hidden), mean=self.forget_bias)
        per_round = 1 if self.rank == 0 else 2
        for k in range(self.rounds):
            source = self.round_sizes(k)[0]
            for factor in self.factors[per_round * k : per_round * (k + 1)]:
                std = math.sqrt(1.3 / source) if self.rank == 0 else (1.0 / (source * self.rank)) ** 0.25
                truncated_normal_(factor, std)
            self.round_biases[k].zero_()

    def draw_state_mask(self, batch: int, like: Tensor) -> Optional[Tensor]:
        """The window's state-dropout mask (B, H) scaled by 1 / (1 - p), or None (eval, p = 0)."""
        if not self.training or self.state_dropout == 0.0:
            return None
        keep = 1.0 - self.state_dropout
        return like.new_empty(batch, self.hidden_size).bernoulli_(keep).div_(keep)

    def forward(self, x: Tensor, state: Optional[LSTMState] = None) -> Tuple[Tensor, LSTMState]:
        # x: (T, B, input_size) -> output (T, B, hidden_size)
        batch = x.size(1)
        if state is None:
            h = c = x.new_zeros(batch, self.hidden_size)
        else:
            h, c = state
        mask = self.draw_state_mask(batch, x)
        w_hh = drop_connect(self.weight_hh, self.weight_drop, self.training)
        factors: List[Tensor] = list(self.factors)
        biases: List[Tensor] = list(self.round_biases)
        run = window_function(self.step)
        # TorchScript's profiling executor runs a function's first calls in a process unoptimised and
        # later ones through an optimised graph that rounds differently: a run resumed from a checkpoint
        # would drift from the uninterrupted one. On the CPU (no fuser there) the optimised graph
        # buys nothing (scripts/bench/bench_mogrifier.py), so it is not used.
        with torch.jit.optimized_execution(x.is_cuda or self.step != "script"):
            out, h, c = run(x, h, c, mask, factors, biases, self.weight_ih.t(), w_hh.t(), self.bias,
                            self.capped_input_gate, self.fused_gates)
        return out, (h, c)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, rounds={self.rounds}, rank={self.rank}, "
            f"state_dropout={self.state_dropout}, weight_drop={self.weight_drop}, "
            f"capped_input_gate={self.capped_input_gate}, step={self.step}"
        )
