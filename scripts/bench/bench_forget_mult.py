"""Time the forget-mult recurrence on the CPU: the original's CPU fallback against our paths.

    python scripts/bench/bench_forget_mult.py --threads 1   # PTB QRNN size, ~1 min

All candidates run in the same process on the same inputs (T=70, B=20, H=1550: the awd-lstm-lm
PTB QRNN's bptt, batch and hidden size), interleaved round by round so that a busy machine slows
them alike; each figure is the minimum (and the median) over the rounds, forward alone (no grad)
and forward + backward (``torch.autograd.grad`` of all three inputs). The baseline is the loop
salesforce/pytorch-qrnn runs on the CPU (``torchqrnn/forget_mult.py`` ``CPUForgetMult``), restated
in awd_fairseq/tools/bench/reference_loops.py with its own convention, h_t = f_t * x_t + (1 - f_t) * h_{t-1}:
it is given 1 - f. The timing harness is awd_fairseq/tools/bench/forget_mult_timing.py.
"""
import argparse

import torch

from awd_fairseq.tools.bench.forget_mult_timing import measure, report
from awd_fairseq.tools.cli import setup_logging


def main(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    report(measure(args.T, args.B, args.H, args.rounds), args.T, args.B, args.H)


def cli_main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=70, help="time steps (the PTB QRNN's bptt)")
    parser.add_argument("--B", type=int, default=20, help="streams (the PTB QRNN's batch size)")
    parser.add_argument("--H", type=int, default=1550, help="hidden units (the PTB QRNN's nhid)")
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds after two warm-up rounds")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (1 on a shared machine)")
    args = parser.parse_args()
    setup_logging()
    main(args)


if __name__ == "__main__":
    cli_main()
