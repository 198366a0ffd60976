"""Score each line of a text file with a checkpoint: per-token log-probabilities and perplexity.

Each line is scored on its own, from the sentence start (`</s>`) to its closing `</s>`, which is
scored too (the tokens fairseq-eval-lm counts for that line inside a split), through the hub
interface's `score()`. Lines must be tokenized like the training data. Output, one line per input
line: the perplexity, then `word/log-prob` (natural log) per token:

    python scripts/score_sentences.py data-bin/ptb --path checkpoints/ptb/checkpoint_best.pt \\
        --input sentences.txt > scores.tsv
"""
import argparse
import logging
import math
import os

import torch

import awd_fairseq  # noqa: F401  (registers the models and task)
from awd_fairseq.tools.cli import setup_logging

logger = logging.getLogger("scripts.score_sentences")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="the fairseq-preprocess directory the model was trained on (dict.txt)")
    parser.add_argument("--path", required=True, help="checkpoint")
    parser.add_argument("--input", required=True, help="text file, one sentence per line")
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per batch")
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even if CUDA is available")
    return parser


def main(args: argparse.Namespace) -> None:
    from fairseq import hub_utils

    loaded = hub_utils.from_pretrained(
        os.path.dirname(os.path.abspath(args.path)), checkpoint_file=os.path.basename(args.path),
        data_name_or_path=os.path.abspath(args.data), batch_size=args.batch_size, max_tokens=None,
    )
    hub = hub_utils.GeneratorHubInterface(loaded["args"], loaded["task"], loaded["models"])
    if torch.cuda.is_available() and not args.cpu:
        hub.cuda()
    with open(args.input, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f]

    total, count = 0.0, 0
    for hypo in hub.score(lines):
        scores = hypo["positional_scores"].tolist()
        words = [hub.tgt_dict[t] for t in hypo["tokens"].tolist()]
        total, count = total + sum(scores), count + len(scores)
        print(f"{math.exp(-sum(scores) / len(scores)):.2f}\t" + " ".join(f"{w}/{s:.4f}" for w, s in zip(words, scores)))
    if count:
        logger.info("%d lines, %d tokens, perplexity %.2f", len(lines), count, math.exp(-total / count))


def cli_main() -> None:
    args = get_parser().parse_args()
    setup_logging()
    main(args)


if __name__ == "__main__":
    cli_main()
