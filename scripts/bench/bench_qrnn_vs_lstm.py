"""QRNN against AWD-LSTM on real PTB, in one run: training tokens/s of each through fairseq-train
with the original's PTB recipes (both at batch size 20), then the forget-mult alone against
pytorch-qrnn's CPU loop (scripts/bench/bench_forget_mult.py). Not a test.

    python scripts/bench/bench_qrnn_vs_lstm.py --threads 1 --updates 60 --rounds 3     # CPU, ~1 h
    python scripts/bench/bench_qrnn_vs_lstm.py --device cuda --updates 200 --rounds 2   # on a GPU

The two fairseq-train runs alternate, `--rounds` times each, so that a machine whose load changes
slows both alike; each run trains `--updates` updates from scratch and fairseq logs words/s every
`--interval` updates; the first interval of each run (start-up, warm-up) is left out. Reported:
the median and the best interval of each model, and their ratio. The recipes (awd-lstm-lm README):

    LSTM: python main.py --batch_size 20 --data data/penn --dropouti 0.4 --dropouth 0.25 --seed 141
    QRNN: python -u main.py --model QRNN --batch_size 20 --clip 0.2 --wdrop 0.1 --nhid 1550
          --nlayers 4 --emsize 400 --dropouth 0.3 --seed 9001 --dropouti 0.4
"""
import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import awd_fairseq
from awd_fairseq.tools import fairseq_logs
from awd_fairseq.tools.bench import forget_mult_timing
from awd_fairseq.tools.cli import USER_DIR, setup_logging

logger = logging.getLogger("scripts.bench_qrnn_vs_lstm")

COMMON = ["--task", "awd_language_modeling", "--criterion", "awd_split_cross_entropy", "--optimizer", "nt_asgd",
          "--lr", "30", "--bptt", "70", "--batch-size", "20"]
RECIPES = {  # `--arch awd_lstm` and `--arch qrnn` hold the recipes' model flags
    "awd_lstm": ["--arch", "awd_lstm", "--clip-norm", "0.25", "--seed", "141"],
    "qrnn": ["--arch", "qrnn", "--clip-norm", "0.2", "--seed", "9001"],
}


def train_wps(data_bin: str, recipe, updates: int, interval: int, device: str, env) -> list:
    with tempfile.TemporaryDirectory() as save_dir:
        cmd = [sys.executable, "-m", "fairseq_cli.train", data_bin, "--user-dir", USER_DIR, *COMMON,
               *recipe, "--max-update", str(updates), "--log-format", "json", "--log-interval", str(interval),
               "--no-progress-bar", "--disable-validation", "--no-save", "--save-dir", save_dir]
        if device == "cpu":
            cmd.append("--cpu")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{text[-3000:]}")
    wps = [float(record["wps"]) for record in fairseq_logs.train_inner(text)]
    return wps[1:]  # the first interval includes start-up


def matrix_flops_per_token(data_bin: str, arch: str) -> int:
    """Training FLOPs per token of the recipe's matrix products: each 2-D weight (recurrent and
    input matrices, QRNN gate projections, the tied output embedding; the embedding lookup is free)
    costs 2 FLOPs per entry forward and 4 backward (input and weight gradients)."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    quiet = logging.getLogger()
    level, quiet.level = quiet.level, logging.WARNING  # not the model-building chatter
    try:
        parser = options.get_training_parser()
        ns = options.parse_args_and_arch(parser, [data_bin, "--user-dir", USER_DIR, *COMMON, "--arch", arch, "--cpu"])
        cfg = convert_namespace_to_omegaconf(ns)
        model = tasks.setup_task(cfg.task).build_model(cfg.model)
    finally:
        quiet.level = level
    return 6 * sum(p.numel() for p in model.parameters() if p.dim() == 2)


def best_ms(fn, reps: int) -> float:
    import time

    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return min(times)


def report_bounds(data_bin: str, wps_median: dict, forget_mult_times) -> None:
    """What this machine allows, measured in the same run: the matrix-product rate (the best
    sgemm rate over the recipes' large shapes at batch 20 x bptt 70) bounds both models' tokens/s, and the
    memory bandwidth bounds the forget-mult, which must read f, z (forward) and f, z, c, grad
    (backward) and write c, grad f, grad z: 9 passes over T x B x H floats. The bandwidth is that
    of an elementwise add moving the same 9 passes' bytes (3 operands of 3 x T x B x H floats):
    the forget-mult's working set exceeds the caches, so a smaller add would measure the L3."""
    import torch

    rows = 70 * 20
    shapes = [  # (m, k, n): the QRNN gate projection forward, its input and weight gradients,
        (rows, 1550, 4650), (rows, 4650, 1550), (4650, rows, 1550), (rows, 400, 10000),  # the output layer
    ]
    rates = []
    for m, k, n in shapes:
        a, b = torch.randn(m, k), torch.randn(k, n)
        rates.append(2 * m * k * n / best_ms(lambda: a @ b, 10) / 1e6)
    gemm_gflops = max(rates)
    nbytes = 70 * 20 * 1550 * 4  # one pass over a (T, B, H) float32 tensor
    x, y, out = (torch.randn(3 * 70, 20, 1550) for _ in range(3))
    bandwidth = 9 * nbytes / best_ms(lambda: torch.add(x, y, out=out), 20) / 1e6  # GB/s
    logger.info("bounds on this machine (%d threads): sgemm %s GFLOP/s at %s (best %.0f); "
                "elementwise bandwidth %.0f GB/s", torch.get_num_threads(), "/".join(f"{r:.0f}" for r in rates),
                ", ".join("x".join(map(str, shape)) for shape in shapes), gemm_gflops, bandwidth)
    achieved, flops_of = {}, {}
    for arch in RECIPES:
        flops = flops_of[arch] = matrix_flops_per_token(data_bin, arch)
        achieved[arch] = wps_median[arch] * flops / 1e9
        logger.info("  %-8s %.1f MFLOP per training token in matrix products; at %.0f tokens/s that is "
                    "%.0f GFLOP/s = %.0f%% of the sgemm rate", arch, flops / 1e6, wps_median[arch],
                    achieved[arch], 100 * achieved[arch] / gemm_gflops)
    need = 2 * wps_median["awd_lstm"] * flops_of["qrnn"] / 1e9
    logger.info("  qrnn at 2x awd_lstm's tokens/s would need %.0f GFLOP/s = %.2fx the sgemm rate",
                need, need / gemm_gflops)
    if forget_mult_times is not None:
        floor_ms = 9 * nbytes / bandwidth / 1e6
        base = min(forget_mult_times[forget_mult_timing.BASELINE][1])
        logger.info("  forget-mult forward+backward moves >= %.0f MB: >= %.2f ms at %.0f GB/s, so at most "
                    "%.1fx CPUForgetMult's %.2f ms for any kernel", 9 * nbytes / 1e6, floor_ms, bandwidth,
                    base / floor_ms, base)


def main(args: argparse.Namespace) -> None:
    if not Path(args.data_bin, "train.bin").exists():
        if args.ptb is None:
            raise SystemExit(f"no binarized PTB at {args.data_bin}: pass --ptb DIR (raw PTB) or --data-bin")
        from awd_fairseq.tools.data.prepare import prepare_corpus

        prepare_corpus("ptb", source=Path(args.ptb), out_dir=Path(args.data_bin))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)

    wps = {name: [] for name in RECIPES}
    for r in range(args.rounds):
        for name, recipe in RECIPES.items():
            intervals = train_wps(args.data_bin, recipe, args.updates, args.interval, args.device, env)
            wps[name] += intervals
            logger.info("round %d %-8s words/s per %d updates: %s", r + 1, name, args.interval,
                        " ".join(f"{w:.0f}" for w in intervals))

    import torch  # after the subprocesses: the forget-mult timing runs here, under the same threads

    if args.threads:
        torch.set_num_threads(args.threads)
    logger.info("fairseq-train on %s, PTB, batch 20, bptt 70, %s threads, %d rounds x %d updates:",
                args.device, args.threads or "default", args.rounds, args.updates)
    for name, values in wps.items():
        logger.info("  %-8s tokens/s median %7.0f   best %7.0f   (%d intervals)", name,
                    statistics.median(values), max(values), len(values))
    logger.info("  qrnn / awd_lstm: median %.2fx, best %.2fx",
                statistics.median(wps["qrnn"]) / statistics.median(wps["awd_lstm"]),
                max(wps["qrnn"]) / max(wps["awd_lstm"]))

    if args.device == "cpu":
        times = forget_mult_timing.measure(70, 20, 1550, args.forget_mult_rounds)
        forget_mult_timing.report(times, 70, 20, 1550)
        report_bounds(args.data_bin, {k: statistics.median(v) for k, v in wps.items()}, times)


def cli_main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-bin", default="data-bin/ptb", help="binarized PTB (scripts/prepare_data.py ptb)")
    parser.add_argument("--ptb", default=None, help="raw PTB (train/valid/test.txt), prepared if --data-bin is missing")
    parser.add_argument("--updates", type=int, default=60, help="updates per fairseq-train run")
    parser.add_argument("--interval", type=int, default=10, help="--log-interval; the first interval is warm-up")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each recipe")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for every run (default: torch's)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where fairseq-train runs")
    parser.add_argument("--forget-mult-rounds", type=int, default=30, help="rounds of the forget-mult timing")
    args = parser.parse_args()
    setup_logging()
    main(args)


if __name__ == "__main__":
    cli_main()
