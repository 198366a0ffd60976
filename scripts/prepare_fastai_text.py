#!/usr/bin/env python
"""Prepare text as fastai prepares it for its language models, one document per line, for
fairseq-preprocess --srcdict with an imported model's dict.txt.

    python scripts/prepare_fastai_text.py raw/valid.txt --output fastai/valid.txt
    python scripts/prepare_fastai_text.py raw/valid.txt --output fastai-bwd/valid.txt --backwards

Every line of INPUT is one document: fastai's rules (xxmaj, xxup, xxrep, ...) are applied to it,
then it is tokenized, by a split on whitespace (`--tokenizer whitespace`, for text tokenized
already, such as WikiText) or by fastai's own spaCy tokenizer (`--tokenizer fastai`); `auto`, the
default, takes fastai's where fastai is installed. `--backwards` writes the text for a backward
model (wt103-bwd): the documents in reverse order, each one's tokens reversed. See docs/pretrained.md.
"""
import argparse
import logging
import sys

from awd_fairseq.tools.cli import setup_logging
from awd_fairseq.tools.fastai_text import fastai_available, prepare

logger = logging.getLogger("scripts.prepare_fastai_text")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="text file, one document per line")
    parser.add_argument("--output", default="-", help="where the tokens go, one document per line (default: stdout)")
    parser.add_argument("--tokenizer", choices=("auto", "fastai", "whitespace"), default="auto",
                        help="fastai's spaCy tokenizer, a whitespace split, or fastai's where installed (auto)")
    parser.add_argument("--backwards", action="store_true", help="reverse the text, for a backward model")
    return parser


def main(args: argparse.Namespace) -> None:
    tokenizer = args.tokenizer
    if tokenizer == "auto":
        tokenizer = "fastai" if fastai_available() else "whitespace"
    logger.info("tokenizer: %s%s", tokenizer, ", backwards" if args.backwards else "")
    with open(args.input, encoding="utf-8") as f:
        documents = [line.rstrip("\n") for line in f]
    lines = prepare(documents, tokenizer=tokenizer, backwards=args.backwards)
    out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")
    try:
        out.writelines(line + "\n" for line in lines)
    finally:
        if out is not sys.stdout:
            out.close()
    logger.info("%d documents, %d tokens", len(lines), sum(len(line.split()) for line in lines))


def cli_main() -> None:
    setup_logging()
    main(get_parser().parse_args())


if __name__ == "__main__":
    cli_main()
