"""The plugin on one GPU, in one run: training and scoring speed of `awd_lstm` and `qrnn` (the PTB
recipes' shapes) through fairseq-train and fairseq-eval-lm against bare PyTorch loops of the same
shapes on the same device (awd_fairseq/tools/bench/bare_loops.py), then dynamic evaluation of each
checkpoint. Prints one line per measurement and the ratios. Not a test.

    python scripts/bench/gpu_check.py data-bin/ptb --updates 300
    python scripts/bench/gpu_check.py data-bin/ptb --updates 20 --device cpu --small   # a smoke run

The fairseq tools run as `python -m fairseq_cli.<tool>` (no console scripts needed). Tokens/s of a
fairseq run is the median of its `wps` records after the first; the bare loop times the same
number of windows after as many warm-up windows as fairseq's first record covers.
"""
import argparse
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from awd_fairseq.tools import fairseq_logs
from awd_fairseq.tools.bench.bare_loops import BareLM, BareTrainer, time_evaluation, time_training
from awd_fairseq.tools.cli import USER_DIR, setup_logging

logger = logging.getLogger("scripts.bench.gpu_check")

RECIPE = ["--task", "awd_language_modeling", "--criterion", "awd_split_cross_entropy", "--optimizer", "nt_asgd",
          "--lr-scheduler", "awd_when", "--lr", "30", "--batch-size", "20", "--bptt", "70"]
MODELS = {"awd_lstm": ["--arch", "awd_lstm", "--clip-norm", "0.25"],
          "qrnn": ["--arch", "qrnn", "--clip-norm", "0.2", "--seed", "9001"]}
BARE = {"awd_lstm": dict(kind="lstm", nhid=1150, nlayers=3), "qrnn": dict(kind="qrnn", nhid=1550, nlayers=4)}
SMALL = ["--emsize", "32", "--nhid", "64", "--nlayers", "2"]


def run_tool(tool: str, args, timeout: int):
    """(seconds, stdout + stderr, exit code) of `python -m fairseq_cli.<tool>`; code None on timeout."""
    cmd = [sys.executable, "-m", f"fairseq_cli.{tool}", *map(str, args), "--user-dir", USER_DIR]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return time.perf_counter() - t0, (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), None
    return time.perf_counter() - t0, proc.stdout + proc.stderr, proc.returncode


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def ptb_stream(data: Path, split: str) -> torch.Tensor:
    from awd_fairseq.tasks.token_stream import load_dictionary, load_split

    return load_split(str(data), split, load_dictionary(str(data))).tokens


def train_speed(args, model: str, save_dir: Path) -> dict:
    cpu = ["--cpu"] if args.device == "cpu" else []
    flags = [args.data, *RECIPE, *MODELS[model], *(SMALL if args.small else []), "--max-update", args.updates,
             "--log-format", "json", "--log-interval", args.log_interval, "--no-progress-bar", "--num-workers", "0",
             "--save-dir", save_dir, "--no-epoch-checkpoints", *cpu]
    seconds, text, code = run_tool("train", flags, args.timeout)
    if code != 0:
        return {"ok": False, "error": "timeout" if code is None else last_line(text)}
    inner = fairseq_logs.train_inner(text)[1:]
    if not inner:
        return {"ok": False, "error": f"fewer than two train_inner records: raise --updates above {args.log_interval}"}
    return {"ok": True, "wps": statistics.median(r["wps"] for r in inner), "seconds": seconds,
            "checkpoint": save_dir / "checkpoint_last.pt"}


def bare_train_speed(args, model: str, stream: torch.Tensor, vocab: int) -> float:
    torch.manual_seed(1)
    sizes = dict(emsize=32, nhid=64, nlayers=2) if args.small else dict(emsize=400, **{k: v for k, v in BARE[model].items() if k != "kind"})
    lm = BareLM(vocab, kind=BARE[model]["kind"], **sizes).to(args.device)
    n = stream.numel() // 20
    data = stream[: n * 20].view(20, n).t().contiguous().to(args.device)  # (N, 20): the original's batchify
    trainer = BareTrainer(lm, data, clip=0.25 if model == "awd_lstm" else 0.2)
    windows = [(i * 70 % (n - 71), 70) for i in range(args.updates)]
    return time_training(trainer, windows, warmup=args.log_interval)


def eval_speed(args, checkpoint: Path, task_flags, split: str = "test") -> dict:
    cpu = ["--cpu"] if args.device == "cpu" else []
    flags = [args.data, "--path", checkpoint, "--gen-subset", split, "--no-progress-bar", *task_flags, *cpu]
    seconds, text, code = run_tool("eval_lm", flags, args.timeout)
    if code != 0:
        return {"ok": False, "error": "timeout" if code is None else last_line(text), "seconds": seconds}
    summary = fairseq_logs.eval_lm_summary(text)
    return {"ok": True, "ppl": summary.perplexity, "wps": summary.tokens / summary.seconds, "seconds": seconds}


def bare_eval_speed(args, model: str, stream: torch.Tensor, vocab: int) -> float:
    torch.manual_seed(1)
    sizes = dict(emsize=32, nhid=64, nlayers=2) if args.small else dict(emsize=400, **{k: v for k, v in BARE[model].items() if k != "kind"})
    lm = BareLM(vocab, kind=BARE[model]["kind"], **sizes).to(args.device)
    return time_evaluation(lm, stream.to(args.device))[0]


def describe(result: dict, what: str) -> str:
    if not result["ok"]:
        return f"{what}: FAILED: {result['error']}"
    ppl = f", ppl {result['ppl']:.2f}" if "ppl" in result else ""
    return f"{what}: {result['wps']:,.0f} tok/s{ppl} ({result['seconds']:.0f} s with start-up)"


def main(args) -> int:
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}; {args.updates} updates per training run")
    train_stream, test_stream = ptb_stream(args.data, "train"), ptb_stream(args.data, "test")
    from awd_fairseq.tasks.token_stream import load_dictionary

    vocab = len(load_dictionary(str(args.data)))
    failures = 0
    for model in args.models:
        run = train_speed(args, model, args.out / model)
        bare = bare_train_speed(args, model, train_stream, vocab)
        print(describe(run, f"{model} fairseq-train"))
        print(f"{model} bare training loop: {bare:,.0f} tok/s")
        if not run["ok"]:
            failures += 1
            continue
        print(f"{model} fairseq-train / bare loop: {run['wps'] / bare:.2f}x")
        scored = eval_speed(args, run["checkpoint"], ["--task", "awd_language_modeling"])
        bare_eval = bare_eval_speed(args, model, test_stream, vocab)
        print(describe(scored, f"{model} fairseq-eval-lm test, batch 1"))
        print(f"{model} bare evaluation loop: {bare_eval:,.0f} tok/s")
        if scored["ok"]:
            print(f"{model} fairseq-eval-lm / bare loop: {scored['wps'] / bare_eval:.2f}x")
        pointer = eval_speed(args, run["checkpoint"], ["--task", "awd_cache_pointer", "--pointer-window", "500",
                                                        "--pointer-theta", "1.0", "--pointer-lambda", "0.1"])
        print(describe(pointer, f"{model} cache pointer (500, 1.0, 0.1) test"))
        dyneval = eval_speed(args, run["checkpoint"], ["--task", "awd_dynamic_eval", "--dyneval-max-segments",
                                                        args.dyneval_stats_segments], split="valid")
        print(describe(dyneval, f"{model} dynamic evaluation valid (statistics from {args.dyneval_stats_segments} segments)"))
        failures += sum(not r["ok"] for r in (scored, pointer, dyneval))
    print("all runs finished" if failures == 0 else f"{failures} runs failed")
    return 0 if failures == 0 else 1


def cli_main() -> None:
    setup_logging()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path, help="binarized PTB (scripts/prepare_data.py ptb)")
    p.add_argument("--out", type=Path, default=Path("runs/gpu_check"), help="checkpoints of the training runs")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--updates", type=int, default=300, help="updates per training run")
    p.add_argument("--log-interval", type=int, default=50, help="updates per wps record (the first is warm-up)")
    p.add_argument("--dyneval-stats-segments", type=int, default=2000,
                   help="training segments for dynamic evaluation's gradient statistics (--dyneval-max-segments)")
    p.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke run")
    p.add_argument("--small", action="store_true", help="tiny models instead of the recipes' sizes (a smoke run)")
    p.add_argument("--timeout", type=int, default=300, help="seconds per fairseq command")
    sys.exit(main(p.parse_args()))


if __name__ == "__main__":
    cli_main()
