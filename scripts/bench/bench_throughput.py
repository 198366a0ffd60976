"""Training throughput of `--arch awd_lstm` (the PTB recipe) through fairseq-train, against a bare
PyTorch loop of the same model and batch, and against fairseq's built-in `lstm_lm` at the same
sizes, all in one run on real PTB (salesforce/awd-lstm-lm: batch 20, bptt 70, SGD lr 30, clip
0.25). Prints tokens/s, peak memory (max RSS) and the ratios. Not a test.

    python scripts/bench/bench_throughput.py --data-bin data-bin/ptb --rounds 3

The bare loop is awd_fairseq/tools/bench/bare_awd_lstm.py, run as a process of its own.
"""
import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import awd_fairseq
from awd_fairseq.tools import fairseq_logs
from awd_fairseq.tools.cli import USER_DIR, setup_logging

PEAK = "import atexit, resource; atexit.register(lambda: print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)); "
logger = logging.getLogger("scripts.bench_throughput")


def marker(text: str, name: str) -> float:
    """The value of the last `NAME value` line our child processes print."""
    return float([line.split()[1] for line in text.splitlines() if line.startswith(name + " ")][-1])


def run(module: str, args):
    """`python -m module args` in a child process; returns (its output, its peak RSS in MiB)."""
    runner = f"import runpy, sys; sys.argv = ['x'] + {list(map(str, args))!r}; runpy.run_module({module!r}, run_name='__main__')"
    out = subprocess.run([sys.executable, "-c", PEAK + runner], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONUNBUFFERED="1"))
    text = out.stdout + out.stderr
    if out.returncode != 0:
        raise SystemExit(f"python -m {module} failed:\n{text[-3000:]}")
    return text, marker(text, "PEAK_RSS_KB") / 1024


def fairseq_wps(text, skip_first=1):
    """Mean words/s of fairseq's train_inner records (--log-format json), leaving out the first
    (warm-up) interval."""
    wps = [float(record["wps"]) for record in fairseq_logs.train_inner(text)]
    wps = wps[skip_first:] or wps
    return sum(wps) / len(wps)


def main(args: argparse.Namespace) -> None:
    if not Path(args.data_bin, "train.bin").exists():
        if args.ptb is None:
            raise SystemExit(f"no binarized PTB at {args.data_bin}: pass --ptb DIR (raw PTB) or --data-bin")
        from awd_fairseq.tools.data.prepare import prepare_corpus

        prepare_corpus("ptb", source=Path(args.ptb), out_dir=Path(args.data_bin))
    tmp = tempfile.mkdtemp()

    def common(updates, interval):
        return ["--batch-size", "20", "--max-update", updates, "--log-format", "json", "--log-interval", interval,
                "--no-progress-bar", "--disable-validation", "--no-save", "--cpu", "--seed", "141", "--save-dir", tmp,
                "--clip-norm", "0.25"]

    def ours():
        text, peak = run("fairseq_cli.train", [args.data_bin, "--user-dir", USER_DIR, "--task", "awd_language_modeling",
                                               "--arch", "awd_lstm", "--criterion", "awd_split_cross_entropy", "--optimizer", "nt_asgd",
                                               "--lr", "30", "--bptt", "70", *common(args.updates, args.interval)])
        return fairseq_wps(text), peak

    def bare():
        text, peak = run("awd_fairseq.tools.bench.bare_awd_lstm", [args.data_bin, args.updates, args.interval])
        return marker(text, "BARE_WPS"), peak

    runs = {"awd_lstm via fairseq-train": [], "bare PyTorch loop": []}
    ratios = []
    for r in range(args.rounds):
        order = [("awd_lstm via fairseq-train", ours), ("bare PyTorch loop", bare)]
        this = {name: fn() for name, fn in (order if r % 2 == 0 else order[::-1])}
        for name, result in this.items():
            runs[name].append(result)
        ratios.append(this["awd_lstm via fairseq-train"][0] / this["bare PyTorch loop"][0])
        logger.info("round %d: fairseq-train %.1f tok/s, bare %.1f tok/s, ratio %.3f", r + 1,
                    this["awd_lstm via fairseq-train"][0], this["bare PyTorch loop"][0], ratios[-1])
    text, peak = run("fairseq_cli.train", [args.data_bin, "--task", "language_modeling", "--arch", "lstm_lm",
                                           "--decoder-embed-dim", "400", "--decoder-hidden-size", "1150", "--decoder-layers", "3",
                                           "--decoder-out-embed-dim", "400", "--share-decoder-input-output-embed",
                                           "--tokens-per-sample", "70", "--sample-break-mode", "none", "--criterion", "cross_entropy",
                                           "--optimizer", "sgd", "--lr", "30", *common(args.lstm_lm_updates, 5)])
    results = {name: (statistics.median([w for w, _ in rs]), max(p for _, p in rs)) for name, rs in runs.items()}
    results["fairseq lstm_lm"] = (fairseq_wps(text), peak)
    bare_wps = results["bare PyTorch loop"][0]
    print(f"{'run':30s} {'tokens/s':>10s} {'vs bare':>8s} {'peak RSS MiB':>13s}   (median over rounds)")
    for name, (wps, peak) in results.items():
        print(f"{name:30s} {wps:10.1f} {wps / bare_wps:8.3f} {peak:13.0f}")
    overhead = 1 - statistics.median(ratios)
    print(f"plugin + fairseq overhead: {100 * overhead:.1f}% (median of per-round ratios "
          f"{', '.join(f'{x:.3f}' for x in ratios)})")
    print(json.dumps({"rounds": ratios, **{k: {"tokens_per_s": v[0], "peak_rss_mib": v[1]} for k, v in results.items()}}))


def cli_main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-bin", default="data-bin/ptb", help="binarized PTB (scripts/prepare_data.py ptb)")
    ap.add_argument("--ptb", default=None, help="raw PTB (train/valid/test.txt), prepared if --data-bin is missing")
    ap.add_argument("--updates", type=int, default=30, help="updates per run (the first --interval are warm-up)")
    ap.add_argument("--interval", type=int, default=10, help="--log-interval of the fairseq runs")
    ap.add_argument("--rounds", type=int, default=3,
                    help="fairseq-train / bare loop pairs, run back to back in alternating order; the overhead "
                         "is the median of the per-round ratios (shared machines drift by 10%% between runs)")
    ap.add_argument("--lstm-lm-updates", type=int, default=15,
                    help="updates of fairseq's lstm_lm (one run; its per-step Python loop makes it slow)")
    args = ap.parse_args()
    if args.updates <= args.interval or args.lstm_lm_updates <= 5:
        ap.error("--updates must exceed --interval (the first interval is warm-up) and --lstm-lm-updates must exceed 5")
    setup_logging()
    main(args)


if __name__ == "__main__":
    cli_main()
