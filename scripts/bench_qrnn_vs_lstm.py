"""QRNN against AWD-LSTM on real PTB, in one run: training tokens/s of each through fairseq-train
with the original's PTB recipes (both at batch size 20), then the forget-mult alone against
pytorch-qrnn's CPU loop (scripts/bench_forget_mult.py). Not a test.

    python scripts/bench_qrnn_vs_lstm.py --threads 1 --updates 60 --rounds 3     # CPU, ~1 h
    python scripts/bench_qrnn_vs_lstm.py --device cuda --updates 200 --rounds 2   # on a GPU

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
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
logger = logging.getLogger("bench_qrnn_vs_lstm")

COMMON = ["--task", "awd_language_modeling", "--criterion", "awd_split_cross_entropy", "--optimizer", "nt_asgd",
          "--lr", "30", "--bptt", "70", "--batch-size", "20"]
RECIPES = {  # `--arch awd_lstm` and `--arch qrnn` hold the recipes' model flags
    "awd_lstm": ["--arch", "awd_lstm", "--clip-norm", "0.25", "--seed", "141"],
    "qrnn": ["--arch", "qrnn", "--clip-norm", "0.2", "--seed", "9001"],
}


def train_wps(data_bin: str, recipe, updates: int, interval: int, device: str, env) -> list:
    with tempfile.TemporaryDirectory() as save_dir:
        cmd = [sys.executable, "-m", "fairseq_cli.train", data_bin, "--user-dir", str(REPO / "awd_fairseq"), *COMMON,
               *recipe, "--max-update", str(updates), "--log-format", "simple", "--log-interval", str(interval),
               "--no-progress-bar", "--disable-validation", "--no-save", "--save-dir", save_dir]
        if device == "cpu":
            cmd.append("--cpu")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{text[-3000:]}")
    wps = [float(x) for x in re.findall(r"train_inner .*?wps=([0-9.]+)", text)]
    return wps[1:]  # the first interval includes start-up


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-bin", default=str(REPO / "data-bin" / "ptb"))
    parser.add_argument("--ptb", default=str(REPO.parent / "shared" / "data" / "ptb"), help="raw PTB, if data-bin is missing")
    parser.add_argument("--updates", type=int, default=60)
    parser.add_argument("--interval", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for every run (default: torch's)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--forget-mult-rounds", type=int, default=30)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    if not Path(args.data_bin, "train.bin").exists():
        subprocess.run([sys.executable, str(REPO / "scripts" / "prepare_data.py"), "ptb", "--from", args.ptb,
                        "--out", args.data_bin], check=True)
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
        import bench_forget_mult

        bench_forget_mult.report(bench_forget_mult.measure(70, 20, 1550, args.forget_mult_rounds), 70, 20, 1550)


if __name__ == "__main__":
    main()
