"""Time the forget-mult implementations on the CPU against pytorch-qrnn's CPU loop, all in one
process on the same inputs, interleaved round by round so that a busy machine slows them alike
(scripts/bench/bench_forget_mult.py, scripts/bench/bench_qrnn_vs_lstm.py)."""
import logging
import statistics
import time

import torch

from awd_fairseq.modules.forget_mult import forget_mult_reference, forget_mult_torch
from .reference_loops import pytorch_qrnn_cpu_forget_mult

logger = logging.getLogger(__name__)
BASELINE = "pytorch-qrnn CPUForgetMult"


def measure(T: int, B: int, H: int, rounds: int):
    """{name: (forward ms list, forward+backward ms list)}, all candidates interleaved per round."""
    torch.manual_seed(0)
    f = torch.rand(T, B, H, requires_grad=True)  # our convention: the weight on c_{t-1}
    f_original = (1 - f).detach().requires_grad_(True)  # pytorch-qrnn's: the weight on x_t
    z = torch.randn(T, B, H, requires_grad=True)
    c0 = torch.randn(B, H, requires_grad=True)
    grad = torch.randn(T, B, H)

    candidates = {
        BASELINE: (pytorch_qrnn_cpu_forget_mult, (f_original, z, c0)),
        "forget_mult_reference": (forget_mult_reference, (f, z, c0)),
        "forget_mult_torch": (forget_mult_torch, (f, z, c0)),
    }
    expected = forget_mult_reference(f, z, c0).detach()
    for name, (fn, inputs) in candidates.items():
        if not torch.allclose(fn(*inputs), expected, atol=1e-5):
            raise RuntimeError(f"{name} disagrees with the reference loop")

    def forward(fn, inputs):
        with torch.no_grad():
            fn(*inputs)

    def both(fn, inputs):
        torch.autograd.grad(fn(*inputs), inputs, grad)

    times = {name: ([], []) for name in candidates}
    for r in range(rounds + 2):  # two warm-up rounds
        for name, (fn, inputs) in candidates.items():
            for kind, run in enumerate((forward, both)):
                start = time.perf_counter()
                run(fn, inputs)
                if r >= 2:
                    times[name][kind].append((time.perf_counter() - start) * 1e3)
    return times


def report(times, T: int, B: int, H: int) -> None:
    logger.info("forget-mult, T=%d B=%d H=%d float32, %d threads, %d interleaved rounds; ms as min / median",
                T, B, H, torch.get_num_threads(), len(times[BASELINE][0]))
    base_fwd, base_both = (min(t) for t in times[BASELINE])
    for name, (fwd, both) in times.items():
        logger.info("%-28s forward %7.2f / %7.2f   forward+backward %7.2f / %7.2f   "
                    "speed-up over CPUForgetMult (min): forward %5.1fx, forward+backward %5.1fx",
                    name, min(fwd), statistics.median(fwd), min(both), statistics.median(both),
                    base_fwd / min(fwd), base_both / min(both))
