#!/usr/bin/env python
"""SGD against NT-ASGD on PTB with a small AWD-LSTM on CPU (the README's optimizer table).

Both arms are one `--optimizer nt_asgd --lr-scheduler awd_when` configuration and differ only in
whether averaging starts. The SGD arm trains `--epochs` epochs and never averages (--nonmono
1000). The NT-ASGD arm resumes the SGD arm's checkpoint from just before the switch, so both share
every update up to it, and averages from then on:

* `--switch-epoch E` (default 12) forces averaging from epoch E (--asgd-at-epoch). Within half an
  hour of CPU the SGD arm still improves every epoch, so the non-monotone rule does not fire; by
  epoch 12 its gains have slowed to a few percent per epoch. A small E shows a switch made too early.
* `--switch-epoch 0` lets the non-monotone rule with `--nonmono` pick the epoch from the SGD arm's
  valid losses (both arms are identical up to then); the NT-ASGD arm resumes that epoch's
  checkpoint, whose pending loss fires the trigger on load as in an uninterrupted run.

Printed: valid perplexity of both arms per epoch from the switch on and their ratio, measured in
the same run, and the CPU time of the training processes.

    python scripts/bench/compare_optimizers.py --data data-bin/ptb --work-dir /tmp/compare_optimizers

`--data` is scripts/prepare_data.py output; a missing folder is prepared from --ptb-raw (the
getdata.sh splits). The valid losses are read from fairseq-train's `--log-format json` records. To fit a CPU budget of half an hour, `--train-fraction` trains on the first
part of PTB's training split (binarized with the full PTB dictionary) and `--nonmono` is small;
validation always uses the whole valid split. A benchmark, not a test.
"""
import argparse
import logging
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import awd_fairseq
from awd_fairseq.tools import fairseq_logs
from awd_fairseq.optim.nonmono import NonMonotoneTrigger
from awd_fairseq.tools.cli import USER_DIR, setup_logging

SWITCH = "NT-ASGD: switching to averaged SGD"
logger = logging.getLogger("scripts.compare_optimizers")


def valid_by_epoch(log) -> dict:
    """{epoch: (valid loss, valid ppl)} of the last validation of each epoch in a fairseq-train log."""
    return {r["epoch"]: (r["loss"], r["ppl"]) for r in fairseq_logs.valid(log)}


def train(data: Path, save_dir: Path, args, extra, log: Path):
    """Runs fairseq-train; returns {epoch: (valid loss, valid ppl)} read from its log, and the log."""
    cmd = [
        sys.executable, "-m", "fairseq_cli.train", str(data), "--user-dir", USER_DIR, "--cpu",
        "--task", "awd_language_modeling", "--arch", "awd_lstm", "--criterion", "awd_split_cross_entropy",
        "--emsize", str(args.emsize), "--nhid", str(args.nhid), "--nlayers", str(args.nlayers),
        "--dropout", "0.2", "--dropouth", "0.1", "--dropouti", "0.2", "--dropoute", "0.1", "--wdrop", "0.2",
        "--optimizer", "nt_asgd", "--lr", str(args.lr), "--clip-norm", "0.25", "--lr-scheduler", "awd_when",
        "--batch-size", str(args.batch_size), "--bptt", str(args.bptt), "--seed", str(args.seed),
        "--max-epoch", str(args.epochs), "--save-dir", str(save_dir), "--num-workers", "0",
        "--no-progress-bar", "--log-format", "json", "--log-interval", "50",
    ] + extra
    start = time.time()
    with open(log, "w") as out:
        subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=True)
    logger.info("%s: %.0f s, log %s", save_dir.name, time.time() - start, log)
    text = log.read_text()
    return valid_by_epoch(text), text


def nonmono_switch_epoch(losses: dict, nonmono: int):
    """The epoch whose validation loss fires NT-ASGD's trigger (averaging starts after it)."""
    trigger = NonMonotoneTrigger(nonmono)
    return next((epoch for epoch in sorted(losses) if trigger.observe(losses[epoch][0])), None)


def train_subset(data: Path, fraction: float, out: Path) -> Path:
    """A data-bin with the first `fraction` of data/raw/train.txt and the whole valid split."""
    lines = (data / "raw" / "train.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    out.mkdir()
    (out / "train.txt").write_text("".join(lines[: int(len(lines) * fraction)]), encoding="utf-8")
    proc = subprocess.run(
        [
            sys.executable, "-m", "fairseq_cli.preprocess", "--only-source", "--srcdict", str(data / "dict.txt"),
            "--trainpref", str(out / "train.txt"), "--validpref", str(data / "raw" / "valid.txt"),
            "--destdir", str(out), "--workers", "1",
        ],
        capture_output=True, text=True,
    )
    if proc.returncode:
        sys.exit(f"fairseq-preprocess failed:\n{proc.stderr[-3000:]}")
    return out


def main(args: argparse.Namespace) -> None:
    if not (args.data / "dict.txt").exists():
        from awd_fairseq.tools.data.prepare import prepare_corpus

        if args.ptb_raw is None:
            sys.exit(f"no prepared PTB at {args.data}: pass --ptb-raw DIR (raw PTB) or --data")
        prepare_corpus("ptb", source=args.ptb_raw, out_dir=args.data)
    sgd_dir, asgd_dir = args.work_dir / "sgd", args.work_dir / "nt_asgd"
    data = args.data if args.train_fraction >= 1 else args.work_dir / "data"
    if args.reuse_sgd:
        sgd = valid_by_epoch(args.work_dir / "sgd.log")
        sgd = {epoch: value for epoch, value in sgd.items() if epoch <= args.epochs}
        shutil.rmtree(asgd_dir, ignore_errors=True)
    else:
        shutil.rmtree(args.work_dir, ignore_errors=True)
        args.work_dir.mkdir(parents=True)
        if args.train_fraction < 1:
            train_subset(args.data, args.train_fraction, data)
        sgd, _ = train(data, sgd_dir, args, ["--nonmono", "1000"], args.work_dir / "sgd.log")
    asgd_dir.mkdir()
    if not args.switch_epoch:
        fired = nonmono_switch_epoch(sgd, args.nonmono)
        if fired is None or fired >= args.epochs:
            sys.exit(f"the non-monotone rule (n = {args.nonmono}) did not fire before epoch {args.epochs}: "
                     "train longer, or pass --switch-epoch E")
        first_averaged, how = fired + 1, f"the non-monotone rule (n = {args.nonmono}) fired at epoch {fired}"
        shutil.copy(sgd_dir / f"checkpoint{fired}.pt", asgd_dir / "checkpoint_last.pt")
        extra = ["--nonmono", str(args.nonmono)]
    else:
        first_averaged, how = args.switch_epoch, f"forced (--asgd-at-epoch {args.switch_epoch})"
        shutil.copy(sgd_dir / f"checkpoint{first_averaged - 1}.pt", asgd_dir / "checkpoint_last.pt")
        extra = ["--nonmono", "1000", "--asgd-at-epoch", str(first_averaged)]
    asgd, asgd_log = train(data, asgd_dir, args, extra, args.work_dir / "nt_asgd.log")
    if SWITCH not in asgd_log:
        sys.exit(f"the NT-ASGD arm did not switch: see {args.work_dir / 'nt_asgd.log'}")

    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"\nvalid perplexity, training on {min(args.train_fraction, 1):.0%} of the train split; awd_lstm "
          f"{args.emsize}/{args.nhid}/{args.nlayers}, lr {args.lr}, batch {args.batch_size} x bptt {args.bptt}; "
          f"switch: {how}, averaging from epoch {first_averaged}; "
          f"CPU time of the training processes {(cpu.ru_utime + cpu.ru_stime) / 60:.1f} min")
    print("| epoch | SGD | NT-ASGD | NT-ASGD / SGD |")
    print("|---:|---:|---:|---:|")
    for epoch in range(first_averaged - 1, args.epochs + 1):
        s = sgd.get(epoch, (None, None))[1]
        a = asgd.get(epoch, (None, None))[1] if epoch >= first_averaged else s
        ratio = f"{a / s:.3f}" if a and s else "-"
        print(f"| {epoch} | {s} | {a} | {ratio} |")
    best_sgd, best_asgd = min(v[1] for v in sgd.values()), min(v[1] for v in asgd.values())
    print(f"best: SGD {best_sgd}, NT-ASGD {best_asgd} (ratio {best_asgd / best_sgd:.3f})")


def cli_main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data-bin/ptb"), help="prepared PTB (scripts/prepare_data.py)")
    parser.add_argument("--ptb-raw", type=Path, default=None, help="raw PTB, prepared into --data if that is missing")
    parser.add_argument("--work-dir", type=Path, default=Path("runs/compare_optimizers"),
                        help="checkpoints and logs of both arms (emptied first)")
    parser.add_argument("--epochs", type=int, default=14, help="epochs of each arm")
    parser.add_argument("--nonmono", type=int, default=1, help="the trigger's n (the paper's 5 fires too late here)")
    parser.add_argument(
        "--switch-epoch", type=int, default=12, help="average from this epoch on; 0: when the non-monotone rule fires"
    )
    parser.add_argument("--emsize", type=int, default=64, help="--emsize of the awd_lstm")
    parser.add_argument("--nhid", type=int, default=128, help="--nhid of the awd_lstm")
    parser.add_argument("--nlayers", type=int, default=2, help="--nlayers of the awd_lstm")
    parser.add_argument("--lr", type=float, default=30.0, help="learning rate of both arms")
    parser.add_argument("--batch-size", type=int, default=20, help="streams per update")
    parser.add_argument("--bptt", type=int, default=35, help="mean window length")
    parser.add_argument("--seed", type=int, default=1, help="fairseq-train --seed")
    parser.add_argument(
        "--reuse-sgd", action="store_true", help="keep the SGD arm already in --work-dir (same settings)"
    )
    parser.add_argument("--train-fraction", type=float, default=0.1, help="train on this leading part of PTB train")
    args = parser.parse_args(argv)
    if args.switch_epoch and not 2 <= args.switch_epoch <= args.epochs:
        parser.error("--switch-epoch must be 0 or lie in 2 .. --epochs")

    setup_logging()
    main(args)


if __name__ == "__main__":
    cli_main()
