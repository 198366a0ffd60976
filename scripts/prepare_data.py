#!/usr/bin/env python
"""Prepare an awd-lstm-lm corpus as a fairseq data-bin folder.

    python scripts/prepare_data.py ptb --from /path/to/ptb          # folder with train/valid/test.txt
    python scripts/prepare_data.py wikitext-2                       # the copy embedded in data/wikitext-2
    python scripts/prepare_data.py wikitext-103                     # downloads wikitext-103-v1.zip
    python scripts/prepare_data.py enwik8 --from enwik8.zip
    python scripts/prepare_data.py custom --from my_text/ --spm-vocab-size 8000

Writes the raw splits to <out>/raw and the binarized corpus to <out> (default data-bin/NAME).
"""

import argparse
from pathlib import Path

from awd_fairseq.tools.data.prepare import default_workers, prepare_corpus
from awd_fairseq.tools.data.sources import CORPORA
from awd_fairseq.tools.cli import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", choices=list(CORPORA), help="which corpus to prepare")
    parser.add_argument(
        "--from",
        dest="source",
        type=Path,
        help="folder with train/valid/test.txt (or .txt.xz), or a local copy of the archive getdata.sh "
        "downloads (for enwik8 also the raw file); without it: the embedded copy for wikitext-2, "
        "a download otherwise",
    )
    parser.add_argument("--download", action="store_true", help="download the archive even where an embedded copy exists")
    parser.add_argument("--out", type=Path, help="data-bin folder (default data-bin/CORPUS)")
    parser.add_argument("--raw-dir", type=Path, help="where the raw splits go (default OUT/raw)")
    parser.add_argument("--workers", type=int, default=default_workers(), help="fairseq-preprocess workers")
    parser.add_argument("--spm-vocab-size", type=int, help="train sentencepiece with this vocabulary on train.txt first")
    parser.add_argument("--num-test-bytes", type=int, default=5_000_000, help="enwik8: bytes in each of valid and test")
    return parser


def main(args: argparse.Namespace) -> None:
    prepare_corpus(
        args.corpus,
        source=args.source,
        out_dir=args.out,
        raw_dir=args.raw_dir,
        workers=args.workers,
        spm_vocab_size=args.spm_vocab_size,
        num_test_bytes=args.num_test_bytes,
        download=args.download,
    )


def cli_main(argv=None) -> None:
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.source is not None and args.download:
        parser.error("--from and --download exclude each other")
    if args.corpus == "custom" and args.source is None:
        parser.error("custom needs --from DIR holding train.txt, valid.txt and test.txt")
    # force: importing fairseq (via awd_fairseq) has configured the root logger already
    setup_logging()
    main(args)


if __name__ == "__main__":
    cli_main()
