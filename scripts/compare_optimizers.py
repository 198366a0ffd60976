#!/usr/bin/env python
"""SGD against NT-ASGD on PTB with a small AWD-LSTM on CPU (the README's optimizer table).

Both arms are one `--optimizer nt_asgd --lr-scheduler awd_when` configuration; they differ only
in whether averaging starts. The SGD arm trains `--epochs` epochs and never averages (--nonmono
large). The NT-ASGD arm resumes the SGD arm's checkpoint of epoch `--switch-epoch - 1`, so the
two share every update before the switch, and averages from epoch `--switch-epoch` on
(--asgd-at-epoch; with a CPU budget the non-monotone rule would fire too late). Printed: the valid
perplexity of both arms per epoch after the switch and their ratio, measured in the same run.

    python scripts/compare_optimizers.py --data data-bin/ptb --work-dir /tmp/compare_optimizers

`--data` is scripts/prepare_data.py output; a missing folder is prepared from --ptb-raw (the
getdata.sh splits). To fit a CPU budget of half an hour, `--train-fraction` trains on the first
part of PTB's training split (binarized with the full PTB dictionary); validation always uses the
whole valid split. A benchmark, not a test.
"""
import argparse
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VALID = re.compile(r"\| valid \| epoch (\d+) \| valid on 'valid' subset \| loss ([\d.]+) \| ppl ([\d.]+)")


def train(data: Path, save_dir: Path, args, extra, log: Path) -> dict:
    """Runs fairseq-train; returns {epoch: valid ppl} read from its log."""
    cmd = [
        sys.executable, "-m", "fairseq_cli.train", str(data), "--user-dir", str(REPO / "awd_fairseq"), "--cpu",
        "--task", "awd_language_modeling", "--arch", "awd_lstm", "--criterion", "awd_split_cross_entropy",
        "--emsize", str(args.emsize), "--nhid", str(args.nhid), "--nlayers", str(args.nlayers),
        "--dropout", "0.2", "--dropouth", "0.1", "--dropouti", "0.2", "--dropoute", "0.1", "--wdrop", "0.2",
        "--optimizer", "nt_asgd", "--lr", str(args.lr), "--clip-norm", "0.25", "--lr-scheduler", "awd_when",
        "--batch-size", str(args.batch_size), "--bptt", str(args.bptt), "--seed", str(args.seed),
        "--max-epoch", str(args.epochs), "--save-dir", str(save_dir), "--num-workers", "0",
        "--no-progress-bar", "--log-format", "simple", "--log-interval", "50",
    ] + extra
    start = time.time()
    with open(log, "w") as out:
        subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=True)
    print(f"{save_dir.name}: {time.time() - start:.0f} s, log {log}", flush=True)
    return {int(m.group(1)): float(m.group(3)) for m in VALID.finditer(log.read_text())}


def train_subset(data: Path, fraction: float, out: Path) -> Path:
    """A data-bin with the first `fraction` of data/raw/train.txt and the whole valid split."""
    lines = (data / "raw" / "train.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    out.mkdir(parents=True)
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data-bin/ptb"))
    parser.add_argument("--ptb-raw", type=Path, default=REPO.parent / "shared" / "data" / "ptb")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/compare_optimizers"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--switch-epoch", type=int, default=5, help="first averaged epoch of the NT-ASGD arm")
    parser.add_argument("--emsize", type=int, default=64)
    parser.add_argument("--nhid", type=int, default=128)
    parser.add_argument("--nlayers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=30.0)
    parser.add_argument("--batch-size", type=int, default=40)
    parser.add_argument("--bptt", type=int, default=70)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--train-fraction", type=float, default=0.25, help="train on this leading part of PTB train")
    args = parser.parse_args(argv)
    if not 2 <= args.switch_epoch <= args.epochs:
        parser.error("--switch-epoch must lie in 2 .. --epochs")

    if not (args.data / "dict.txt").exists():
        sys.path.insert(0, str(REPO))
        from awd_fairseq.data.prepare import prepare_corpus

        prepare_corpus("ptb", source=args.ptb_raw, out_dir=args.data)
    if args.work_dir.exists():
        shutil.rmtree(args.work_dir)
    sgd_dir, asgd_dir = args.work_dir / "sgd", args.work_dir / "nt_asgd"
    asgd_dir.mkdir(parents=True)
    data = args.data
    if args.train_fraction < 1:
        data = train_subset(args.data, args.train_fraction, args.work_dir / "data")

    sgd = train(data, sgd_dir, args, ["--nonmono", "1000"], args.work_dir / "sgd.log")
    shutil.copy(sgd_dir / f"checkpoint{args.switch_epoch - 1}.pt", asgd_dir / "checkpoint_last.pt")
    asgd = train(
        data, asgd_dir, args, ["--asgd-at-epoch", str(args.switch_epoch)], args.work_dir / "nt_asgd.log"
    )

    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"\nvalid perplexity, PTB (train fraction {args.train_fraction}), awd_lstm {args.emsize}/{args.nhid}/"
          f"{args.nlayers}, lr {args.lr}, averaging from epoch {args.switch_epoch}; "
          f"CPU time {(cpu.ru_utime + cpu.ru_stime) / 60:.1f} min")
    print("| epoch | SGD | NT-ASGD | NT-ASGD / SGD |")
    print("|---:|---:|---:|---:|")
    for epoch in range(args.switch_epoch - 1, args.epochs + 1):
        a = asgd.get(epoch, sgd.get(epoch) if epoch < args.switch_epoch else None)
        s = sgd.get(epoch)
        ratio = f"{a / s:.3f}" if a and s else "-"
        print(f"| {epoch} | {s} | {a} | {ratio} |")


if __name__ == "__main__":
    main()
