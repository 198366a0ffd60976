"""Check that `make demo` printed the perplexities the README states for the same number of updates.

Usage: check_demo_figures.py DEMO_LOG [--readme README.md] [--rtol 0.005]

The README is the one source of the figures: its block that starts with the line
``trained for N updates`` (N as in the demo's log) is followed by the demo's three result lines
(``valid, printed by fairseq-train ...``, ``valid, fairseq-eval-lm ...``, ``test, ...``); each
perplexity in the log must equal the README's within the relative tolerance. The tolerance only has
to absorb the printed rounding: with the demo's pinned kernels and thread count the run is the same
bit for bit, and any float-rounding difference in training changes the 200-update perplexity by far
more (docs/training.md, "Reproducible figures"). Standard library only: CI runs it before the tests.
"""
import argparse
import re
import sys
from typing import Dict

LABELS = {  # as scripts/demo.sh prints them, compared with runs of spaces collapsed
    "train_valid": "valid, printed by fairseq-train (10 streams):",
    "eval_valid": "valid, fairseq-eval-lm, 10 streams (same):",
    "test": "test, fairseq-eval-lm, 1 stream (original):",
}
FIGURE = r" Loss \(base 2\): [0-9.]+, Perplexity: ([0-9.]+)$"


def read_figures(lines, updates: int, where: str) -> Dict[str, float]:
    """The three perplexities that follow the line ``trained for <updates> updates``."""
    heads = [i for i, line in enumerate(lines) if line.strip() == f"trained for {updates} updates"]
    if not heads:
        raise ValueError(f"{where} has no line 'trained for {updates} updates' followed by the demo's figures")
    block = lines[heads[-1] + 1: heads[-1] + 1 + len(LABELS)]
    figures = {}
    for (key, label), line in zip(LABELS.items(), block):
        m = re.match(re.escape(label) + FIGURE, " ".join(line.split()))
        if m is None:
            raise ValueError(f"{where}: after 'trained for {updates} updates', expected a line "
                             f"'{label} Loss (base 2): ..., Perplexity: ...', got {line.strip()!r}")
        figures[key] = float(m.group(1))
    if len(figures) != len(LABELS):
        raise ValueError(f"{where}: the block after 'trained for {updates} updates' ends early")
    return figures


def logged_updates(lines, where: str) -> int:
    counts = [int(m.group(1)) for line in lines for m in [re.match(r"trained for ([0-9]+) updates\s*$", line)] if m]
    if not counts:
        raise ValueError(f"{where} has no line 'trained for N updates': not a log of scripts/demo.sh")
    return counts[-1]


def main(args) -> int:
    with open(args.demo_log) as f:
        log = f.read().splitlines()
    with open(args.readme) as f:
        readme = f.read().splitlines()
    updates = logged_updates(log, args.demo_log)
    printed = read_figures(log, updates, args.demo_log)
    stated = read_figures(readme, updates, args.readme)
    bad = []
    for key, want in stated.items():
        got = printed[key]
        rel = abs(got - want) / want
        ok = rel <= args.rtol
        print(f"CI: {key:11s} README {want:10.2f}  demo {got:10.2f}  rel. diff {rel:.2e}  {'ok' if ok else 'MISMATCH'}")
        if not ok:
            bad.append(key)
    if bad:
        print(f"CI: make demo's perplexities ({', '.join(bad)}) differ from the README's for {updates} updates by more "
              f"than {args.rtol:g} relative; the figures hold for the kernels scripts/demo.sh pins, its thread count and "
              f"the README's torch (docs/training.md, 'Reproducible figures'): fix the code, or re-measure and update "
              f"the block 'trained for {updates} updates' in {args.readme}", file=sys.stderr)
        return 1
    return 0


def cli_main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo_log", help="what scripts/demo.sh printed (the CI's tee'd log)")
    parser.add_argument("--readme", default="README.md", help="the README holding the stated figures")
    parser.add_argument("--rtol", type=float, default=0.005,
                        help="relative tolerance on each perplexity (0.005: 0.5%%)")
    try:
        sys.exit(main(parser.parse_args()))
    except (ValueError, OSError) as e:
        sys.exit(f"CI: {e}")


if __name__ == "__main__":
    cli_main()
