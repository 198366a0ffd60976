"""Time the forget-mult recurrence on the CPU: the original's CPU fallback against our paths.

    PYTHONPATH=. .venv/bin/python scripts/bench_forget_mult.py --threads 1   # PTB QRNN size, ~1 min

All candidates run in the same process on the same inputs (T=70, B=20, H=1550: the awd-lstm-lm
PTB QRNN's bptt, batch and hidden size), interleaved round by round so that a busy machine slows
them alike; each figure is the minimum (and the median) over the rounds, forward alone (no grad)
and forward + backward (``torch.autograd.grad`` of all three inputs). The baseline is the loop
salesforce/pytorch-qrnn runs on the CPU (``torchqrnn/forget_mult.py`` ``CPUForgetMult``), restated
below with its own convention, h_t = f_t * x_t + (1 - f_t) * h_{t-1}: it is given 1 - f.
"""
import argparse
import logging
import statistics
import time

import torch

from awd_fairseq.modules.forget_mult import forget_mult_reference, forget_mult_torch
from awd_fairseq.modules.forget_mult_cpu import cpu_kernel_available, forget_mult_cpu

logger = logging.getLogger("bench_forget_mult")
BASELINE = "pytorch-qrnn CPUForgetMult"


def pytorch_qrnn_cpu_forget_mult(f, x, hidden_init=None):
    """pytorch-qrnn's CPUForgetMult.forward; its f weights the new input x."""
    result = []
    forgets = f.split(1, dim=0)
    prev_h = hidden_init
    for i, h in enumerate((f * x).split(1, dim=0)):
        if prev_h is not None:
            h = h + (1 - forgets[i]) * prev_h
        h = h.view(h.size()[1:])
        result.append(h)
        prev_h = h
    return torch.stack(result)


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
    if cpu_kernel_available():
        candidates["forget_mult_cpu (C)"] = (forget_mult_cpu, (f, z, c0))
    else:
        logger.warning("the C kernel could not be built: it is left out")
    expected = forget_mult_reference(f, z, c0).detach()
    for name, (fn, inputs) in candidates.items():
        assert torch.allclose(fn(*inputs), expected, atol=1e-5), name

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


def report(times, T: int, B: int, H: int):
    logger.info("forget-mult, T=%d B=%d H=%d float32, %d threads, %d interleaved rounds; ms as min / median",
                T, B, H, torch.get_num_threads(), len(times[BASELINE][0]))
    base_fwd, base_both = (min(t) for t in times[BASELINE])
    for name, (fwd, both) in times.items():
        logger.info("%-28s forward %7.2f / %7.2f   forward+backward %7.2f / %7.2f   "
                    "speed-up over CPUForgetMult (min): forward %5.1fx, forward+backward %5.1fx",
                    name, min(fwd), statistics.median(fwd), min(both), statistics.median(both),
                    base_fwd / min(fwd), base_both / min(both))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=70)
    parser.add_argument("--B", type=int, default=20)
    parser.add_argument("--H", type=int, default=1550)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (1 on a shared machine)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    report(measure(args.T, args.B, args.H, args.rounds), args.T, args.B, args.H)


if __name__ == "__main__":
    main()
