"""Time the forget-mult recurrence: the reference loop against the fast pure-torch path.

    PYTHONPATH=. .venv/bin/python scripts/bench_forget_mult.py            # PTB QRNN size, ~20 s
    PYTHONPATH=. .venv/bin/python scripts/bench_forget_mult.py --threads 1

Both sides run in the same process on the same inputs (T=70, B=20, H=1550: the awd-lstm-lm
QRNN's bptt, batch and hidden size). Each timing is the minimum and the median of ``--repeats``
calls, so a busy machine shows up as a gap between the two. ``--naive`` also times the loop written
with ``f[t]`` indexing, whose backward materialises a full-size zero gradient per step.
"""
import argparse
import logging
import statistics
import time

import torch

from awd_fairseq.modules.forget_mult import forget_mult_reference, forget_mult_torch

logger = logging.getLogger("bench_forget_mult")


def naive_indexing_loop(f, z, c0=None):
    c = torch.zeros_like(z[0]) if c0 is None else c0
    cells = []
    for t in range(f.shape[0]):
        c = f[t] * c + (1 - f[t]) * z[t]
        cells.append(c)
    return torch.stack(cells)


def timed(fn, repeats):
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return min(times), statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=70)
    parser.add_argument("--B", type=int, default=20)
    parser.add_argument("--H", type=int, default=1550)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--naive", action="store_true", help="also time the f[t]-indexing loop")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    f = torch.rand(args.T, args.B, args.H, requires_grad=True)
    z = torch.randn(args.T, args.B, args.H, requires_grad=True)
    c0 = torch.randn(args.B, args.H, requires_grad=True)
    grad = torch.randn(args.T, args.B, args.H)
    inputs = (f, z, c0)

    candidates = {"reference": forget_mult_reference, "fast": forget_mult_torch}
    if args.naive:
        candidates["naive f[t]"] = naive_indexing_loop
    expected = forget_mult_reference(f, z, c0)
    assert torch.allclose(forget_mult_torch(f, z, c0), expected, atol=1e-5)

    logger.info("T=%d B=%d H=%d float32, %d threads; ms as min / median of %d",
                args.T, args.B, args.H, torch.get_num_threads(), args.repeats)
    results = {}
    for name, fn in candidates.items():
        with torch.no_grad():
            forward = timed(lambda: fn(*inputs), args.repeats)
        both = timed(lambda: torch.autograd.grad(fn(*inputs), inputs, grad), max(3, args.repeats // 4 if "naive" in name else args.repeats))
        results[name] = (forward, both)
        logger.info("%-11s forward %7.2f / %7.2f   forward+backward %8.2f / %8.2f",
                    name, *forward, *both)
    ref_fwd, ref_both = results["reference"]
    fast_fwd, fast_both = results["fast"]
    logger.info("ratio reference/fast (min): forward %.1fx, forward+backward %.1fx",
                ref_fwd[0] / fast_fwd[0], ref_both[0] / fast_both[0])
    if args.naive:
        logger.info("ratio naive/fast (min): forward+backward %.1fx", results["naive f[t]"][1][0] / fast_both[0])


if __name__ == "__main__":
    main()
