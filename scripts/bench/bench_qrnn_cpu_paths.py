"""What the QRNN's oneDNN gate projection buys in a whole training update, measured in one process.

The path: modules/onednn_linear.py against `F.linear` (MKL's sgemm). One update is what fairseq-train does per step with
the PTB QRNN recipe: the `qrnn` model (4 layers, 400 / 1550, weight drop and all dropouts on),
`awd_split_cross_entropy` with AR / TAR, backward, clipping at 0.2 and an SGD step, on a 20 x 70
window of random tokens over a 10k vocabulary. The two paths run round by round in a
rotating order, so that a machine whose load changes slows them alike; each round's figure is the
median of `--updates` updates, the reported ratio the median over rounds of the per-round ratios.
Not a test.

    python scripts/bench/bench_qrnn_cpu_paths.py --rounds 7 --updates 3

Measured figures: docs/qrnn.md ("Kernels").
"""
import argparse
import logging
import statistics
import time
from unittest import mock

import torch
import torch.nn.functional as F
from fairseq.data import Dictionary

import awd_fairseq  # noqa: F401  (registers the model and criterion)
from awd_fairseq.criterions.awd_split_cross_entropy import AWDSplitCrossEntropyCriterion
from awd_fairseq.models.qrnn import QRNNConfig, QRNNLanguageModel
from awd_fairseq.modules import onednn_linear, qrnn
from awd_fairseq.tools.cli import setup_logging

logger = logging.getLogger("scripts.bench_qrnn_cpu_paths")

ARMS = {"oneDNN linear": onednn_linear.linear, "F.linear": F.linear}  # the gate projection


class _Task:
    def __init__(self, vocab: int):
        self.source_dictionary = self.target_dictionary = Dictionary()
        for i in range(vocab - len(self.target_dictionary)):
            self.target_dictionary.add_symbol(f"w{i}")


def main(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(9001)
    task = _Task(args.vocab)
    model = QRNNLanguageModel.build_model(QRNNConfig(), task).train()
    criterion = AWDSplitCrossEntropyCriterion(task, alpha=2.0, beta=1.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=30, weight_decay=1.2e-6)
    B, T = args.batch_size, args.bptt
    tokens = torch.randint(4, args.vocab, (B, T + 1))
    sample = {"net_input": {"src_tokens": tokens[:, :-1]}, "target": tokens[:, 1:], "ntokens": B * T, "nsentences": B}
    logger.info("qrnn PTB recipe, batch %d x bptt %d, vocab %d, %d threads, oneDNN available: %s",
                B, T, args.vocab, torch.get_num_threads(), onednn_linear.onednn_linear_available())

    def update():
        optimizer.zero_grad()
        loss, sample_size, _ = criterion(model, sample)
        (loss / sample_size).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.2)
        optimizer.step()

    def timed(arm: str) -> float:
        with mock.patch.object(qrnn, "linear", ARMS[arm]):  # what QRNNLayer calls
            ms = []
            for _ in range(args.updates):
                start = time.perf_counter()
                update()
                ms.append((time.perf_counter() - start) * 1e3)
        return statistics.median(ms)

    names = list(ARMS)
    for name in names:  # warm-up: kernels built, allocator and oneDNN primitives cached
        timed(name)
    per_round = {name: [] for name in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            per_round[name].append(timed(name))
        logger.info("round %d: %s", r + 1, ", ".join(f"{n} {per_round[n][-1]:.0f} ms" for n in names))
    base = per_round[names[0]]
    print(f"{'gate projection':16s} {'ms / update (median)':>21s} {'x oneDNN (median of rounds)':>29s}")
    for name in names:
        ratios = [t / b for t, b in zip(per_round[name], base)]
        print(f"{name:16s} {statistics.median(per_round[name]):21.0f} {statistics.median(ratios):29.3f}")


def cli_main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds of both paths")
    parser.add_argument("--updates", type=int, default=3, help="timed updates per path and round")
    parser.add_argument("--batch-size", type=int, default=20, help="streams per update (the recipe's 20)")
    parser.add_argument("--bptt", type=int, default=70, help="window length (the recipe's 70)")
    parser.add_argument("--vocab", type=int, default=10000, help="vocabulary size (PTB's 10k)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    setup_logging()
    main(args)


if __name__ == "__main__":
    cli_main()
