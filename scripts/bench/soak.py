#!/usr/bin/env python
"""Soak test: a long CPU fairseq-train run with its resident memory (RSS) sampled over time.

It trains a small AWD-LSTM with NT-ASGD for `--max-update` updates (default 2,000), validating
every epoch and writing a checkpoint every `--save-interval-updates` (default 200; fairseq also
validates before each of these), and reads the training process's VmRSS from /proc every
`--interval` seconds. Memory that grows with the number of updates (recurrent states kept
across windows, loss or metric histories, checkpoint buffers) shows as a positive slope.

Printed: RSS at the first logged update, at the middle and at the end of the run, the peak, the
minimum / median / maximum of each quarter of the run, and the least-squares slope of RSS against
updates after the warm-up (`--warmup-fraction` of the updates) and over the second half. A leak
raises the maximum of every quarter; the allocator settling into its working set does not.

    python scripts/bench/soak.py --work-dir /tmp/soak                     # a slice of the embedded WikiText-2
    python scripts/bench/soak.py --data data-bin/ptb --work-dir /tmp/soak # any fairseq-preprocess output

Extra fairseq-train arguments go after `--`. Linux only (/proc). A measurement, not a test.
"""
import argparse
import lzma
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import awd_fairseq
from awd_fairseq.tools.data.prepare import EMBEDDED_WIKITEXT2, binarize

UPDATE = re.compile(r"num_updates[= ](\d+)")
VALID = re.compile(r"\| valid \| epoch (\d+) \| valid on 'valid' subset \| loss ([\d.]+)")
SAVED = re.compile(r"Saved checkpoint \S+ \(epoch \d+ @ (\d+) updates")


def embedded_slice(out: Path, train_lines: int, eval_lines: int) -> Path:
    """A data-bin of the first lines of the embedded WikiText-2 splits."""
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train_lines), ("valid", eval_lines), ("test", eval_lines)):
        with lzma.open(EMBEDDED_WIKITEXT2 / f"{split}.txt.xz", "rt", encoding="utf-8") as f:
            lines = [line for _, line in zip(range(n), f)]
        (raw / f"{split}.txt").write_text("".join(lines), encoding="utf-8")
    binarize(raw, out / "bin", workers=1)
    return out / "bin"


def rss_mib(pid: int):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except FileNotFoundError:
        return None
    return None


def slope(points):
    """Least-squares slope of y against x."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def train_command(args, data: Path, save_dir: Path, extra):
    return [
        sys.executable, "-m", "fairseq_cli.train", str(data), "--user-dir", str(Path(awd_fairseq.__file__).parent),
        "--cpu", "--num-workers", "0", "--seed", str(args.seed),
        "--task", "awd_language_modeling", "--arch", "awd_lstm",
        "--emsize", str(args.emsize), "--nhid", str(args.nhid), "--nlayers", str(args.nlayers),
        "--criterion", "awd_split_cross_entropy", "--optimizer", "nt_asgd", "--lr", "30", "--clip-norm", "0.25",
        "--lr-scheduler", "awd_when", "--nonmono", "1",
        "--batch-size", str(args.batch_size), "--bptt", str(args.bptt), "--max-update", str(args.max_update),
        "--save-interval-updates", str(args.save_interval_updates), "--keep-interval-updates", "2",
        "--save-dir", str(save_dir), "--no-progress-bar", "--log-format", "simple", "--log-interval", "1",
    ] + list(extra)


def main(args):
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="soak_"))
    work.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else embedded_slice(work / "data", args.train_lines, args.eval_lines)
    cmd = train_command(args, data, work / "checkpoints", args.fairseq_args)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1")
    if args.mmap_threshold:  # glibc: a fixed threshold stops it from growing, so freed tensors leave RSS
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
    log_path = work / "train.log"
    print("command:", " ".join(cmd), flush=True)
    state = {"update": 0, "valid": [], "saved": []}
    start = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)

        def read():
            for line in proc.stdout:
                log.write(line)
                m = UPDATE.search(line)
                if m:
                    state["update"] = int(m.group(1))
                m = VALID.search(line)
                if m:
                    state["valid"].append((int(m.group(1)), float(m.group(2))))
                m = SAVED.search(line)
                if m:
                    state["saved"].append(int(m.group(1)))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        samples = []  # (seconds, updates, RSS MiB)
        while proc.poll() is None:
            rss = rss_mib(proc.pid)
            if rss is not None and state["update"] > 0:
                samples.append((time.time() - start, state["update"], rss))
            time.sleep(args.interval)
        reader.join()
    if proc.returncode != 0:
        raise SystemExit(f"fairseq-train failed (exit {proc.returncode}); see {log_path}")
    if len(samples) < 3:
        raise SystemExit(f"only {len(samples)} RSS samples: lower --interval or raise --max-update")
    last = samples[-1][1]
    steady = [(u, r) for _, u, r in samples if u >= args.warmup_fraction * last]
    middle = min(samples, key=lambda s: abs(s[1] - last / 2))
    with open(work / "rss.csv", "w") as f:
        f.write("seconds,updates,rss_mib\n")
        f.writelines(f"{t:.1f},{u},{r:.1f}\n" for t, u, r in samples)
    epochs = max((e for e, _ in state["valid"]), default=0)
    print(f"updates: {last} in {samples[-1][0]:.0f} s; validations: {len(state['valid'])} (epochs {epochs}); "
          f"checkpoints at updates: {sorted(set(state['saved']))}")
    print(f"valid losses (base 2): {[loss for _, loss in state['valid']]}")
    for name, (t, u, r) in (("start", samples[0]), ("middle", middle), ("end", samples[-1])):
        print(f"RSS {name}: {r:.1f} MiB at update {u} ({t:.0f} s)")
    print(f"RSS peak: {max(r for _, _, r in samples):.1f} MiB; samples: {len(samples)} every {args.interval} s")
    for q in range(4):  # a leak raises every quarter's maximum; an allocator settling does not
        part = [r for _, u, r in samples if q * last / 4 < u <= (q + 1) * last / 4]
        if part:
            part.sort()
            print(f"RSS updates {q * last // 4}-{(q + 1) * last // 4}: min {part[0]:.1f}, "
                  f"median {part[len(part) // 2]:.1f}, max {part[-1]:.1f} MiB")
    second_half = [(u, r) for _, u, r in samples if u >= last / 2]
    print(f"RSS slope after update {steady[0][0]}: {slope(steady) * 1000:+.2f} MiB per 1000 updates "
          f"({len(steady)} samples); over the second half: {slope(second_half) * 1000:+.2f} MiB per 1000 updates")
    print(f"log {log_path}, samples {work / 'rss.csv'}")


def cli_main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="a fairseq-preprocess --only-source folder (default: a WikiText-2 slice)")
    parser.add_argument("--work-dir", help="where the slice, checkpoints, log and rss.csv go (default: a temp dir)")
    parser.add_argument("--train-lines", type=int, default=2000, help="lines of the embedded WikiText-2 train split")
    parser.add_argument("--eval-lines", type=int, default=200, help="lines of its valid and test splits")
    parser.add_argument("--max-update", type=int, default=2000, help="updates to train")
    parser.add_argument("--save-interval-updates", type=int, default=200, help="checkpoint every this many updates")
    parser.add_argument("--emsize", type=int, default=32, help="embedding size")
    parser.add_argument("--nhid", type=int, default=64, help="LSTM hidden size")
    parser.add_argument("--nlayers", type=int, default=2, help="LSTM layers")
    parser.add_argument("--batch-size", type=int, default=10, help="training streams")
    parser.add_argument("--bptt", type=int, default=35, help="mean BPTT window")
    parser.add_argument("--seed", type=int, default=1, help="fairseq seed")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the training process")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between RSS samples")
    parser.add_argument(
        "--mmap-threshold", type=int, default=0,
        help="set glibc's MALLOC_MMAP_THRESHOLD_ (bytes) in the training process: blocks above it are "
        "mmapped and returned on free, so RSS follows live memory instead of the heap's high-water mark",
    )
    parser.add_argument("--warmup-fraction", type=float, default=0.1, help="updates left out of the slope")
    args, extra = parser.parse_known_args()
    args.fairseq_args = extra[1:] if extra[:1] == ["--"] else extra
    main(args)


if __name__ == "__main__":
    cli_main()
