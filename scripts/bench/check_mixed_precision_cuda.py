"""Train `awd_lstm` and `qrnn` with NT-ASGD on PTB for a few hundred updates on one CUDA GPU in fp32,
`--fp16`, `--amp` and bfloat16 autocast (`--bf16-autocast`), and print each run's training-loss curve, validation loss and
tokens/s next to fp32's. fp32 runs twice (two seeds): the gap between its two runs is the noise
a mixed-precision run's losses are held to.

On a GPU machine (PTB binarized first: python scripts/prepare_data.py ptb --from /path/to/ptb):
    python scripts/bench/check_mixed_precision_cuda.py data-bin/ptb --updates 300
Prints one table row per run and a verdict line per model; exits non-zero when a precision fails to
train or its losses fall outside max(3 x the fp32 seed gap, --min-tolerance) bits of fp32's. On the
CPU fairseq-train refuses --fp16 / --amp / --bf16-autocast (see awd_fairseq/models/checks.py), so this
script needs the GPU.
"""
import argparse
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from awd_fairseq.tools import fairseq_logs
from awd_fairseq.tools.cli import USER_DIR, setup_logging

logger = logging.getLogger("check_mixed_precision_cuda")

PRECISIONS = {"fp32": [], "fp16": ["--fp16"], "amp": ["--amp"], "bf16": ["--bf16-autocast"]}  # fairseq's --bf16 is a TPU
# the original README's PTB recipes, shortened (their full commands: README.md)
MODELS = {
    "awd_lstm": ["--arch", "awd_lstm", "--clip-norm", "0.25"],
    "qrnn": ["--arch", "qrnn", "--clip-norm", "0.2"],
}


def train(data, model, precision, seed, args, save_dir) -> dict:
    cmd = [
        sys.executable, "-m", "fairseq_cli.train", str(data), "--user-dir", USER_DIR,
        "--task", "awd_language_modeling", *MODELS[model], *PRECISIONS[precision],
        "--criterion", "awd_split_cross_entropy", "--optimizer", "nt_asgd", "--lr-scheduler", "awd_when",
        "--lr", "30", "--batch-size", "20", "--bptt", "70", "--seed", str(seed),
        "--max-update", str(args.updates), *(["--asgd-from-start"] if args.average else []),
        "--log-format", "json", "--log-interval", str(args.log_interval), "--no-progress-bar",
        "--save-dir", str(save_dir), "--no-save", "--num-workers", "0",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        return {"ok": False, "error": text.strip().splitlines()[-1] if text.strip() else f"exit {proc.returncode}"}
    inner = fairseq_logs.train_inner(text)
    valid = fairseq_logs.valid(text)
    return {
        "ok": True,
        "curve": [(r["num_updates"], r["loss"]) for r in inner],
        "wps": sorted(r["wps"] for r in inner[1:] or inner)[len(inner[1:] or inner) // 2],  # median, first skipped
        "valid": valid[-1]["loss"] if valid else float("nan"),
    }


def compare(model, runs, args) -> bool:
    ref, other = runs[("fp32", args.seed)], runs[("fp32", args.seed + 1)]
    if not (ref["ok"] and other["ok"]):
        print(f"FAIL {model}: fp32 did not train: {ref.get('error') or other.get('error')}")
        return False
    noise = max(abs(a - b) for (_, a), (_, b) in zip(ref["curve"], other["curve"]))
    noise = max(noise, abs(ref["valid"] - other["valid"]))
    tolerance = max(3 * noise, args.min_tolerance)
    print(f"{model}: fp32 seed gap {noise:.3f} bits -> tolerance {tolerance:.3f} bits")
    print(f"  {'precision':<9} {'tokens/s':>9} {'x fp32':>7} {'valid':>7} {'max |d loss|':>12}  curve (update: loss)")
    ok = True
    for precision in PRECISIONS:
        run = runs[(precision, args.seed)]
        if not run["ok"]:
            print(f"  {precision:<9} FAIL: {run['error']}")
            ok = False
            continue
        gap = max(abs(a - b) for (_, a), (_, b) in zip(ref["curve"], run["curve"]))
        gap = max(gap, abs(run["valid"] - ref["valid"]))
        curve = " ".join(f"{u}:{loss:.2f}" for u, loss in run["curve"])
        verdict = "ok  " if gap <= tolerance else "FAIL"
        ok &= gap <= tolerance
        print(f"  {precision:<9} {run['wps']:>9.0f} {run['wps'] / ref['wps']:>7.2f} {run['valid']:>7.3f} "
              f"{gap:>12.3f}  {verdict} {curve}")
    return ok


def main(args) -> int:
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: --fp16 / --amp / --bf16 need one (fairseq-train refuses them on the CPU)")
        return 2
    print(f"device: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; {args.updates} updates per run")
    all_ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            runs = {}
            for precision, seed in [("fp32", args.seed + 1)] + [(p, args.seed) for p in PRECISIONS]:
                logger.info("%s %s seed %d", model, precision, seed)
                runs[(precision, seed)] = train(args.data, model, precision, seed, args, Path(tmp) / model / precision)
            all_ok &= compare(model, runs, args)
    print("all precisions within noise of fp32" if all_ok else "some precision failed or left the fp32 noise band")
    return 0 if all_ok else 1


def cli_main():
    setup_logging()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="PTB binarized (scripts/prepare_data.py ptb)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--updates", type=int, default=300, help="updates per run")
    parser.add_argument("--log-interval", type=int, default=50, help="updates between points of the loss curve")
    parser.add_argument("--seed", type=int, default=1, help="seed of every run; fp32 also runs with seed + 1")
    parser.add_argument("--average", action="store_true",
                        help="average from the first update (exercises NT-ASGD's averaged fp32 master weights)")
    parser.add_argument("--min-tolerance", type=float, default=0.05, help="smallest accepted loss gap, bits")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(parser.parse_args()))


if __name__ == "__main__":
    cli_main()
