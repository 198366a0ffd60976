#!/usr/bin/env python
"""Import a fastai AWD-LSTM language model (ULMFiT's wt103-fwd / wt103-bwd) as a fairseq checkpoint.

    python scripts/import_fastai_lm.py wt103-fwd/lstm_fwd.pth wt103-fwd/itos_wt103.pkl --out wt103-fwd-fairseq

Writes OUT/model.pt (this plugin's awd_lstm; fairseq-eval-lm, the hub's from_pretrained(OUT) and
fairseq-train --finetune-from-model read it) and OUT/dict.txt (for fairseq-preprocess --srcdict).
`--vocab DICT` re-aligns the model to another dict.txt instead, as fastai does before fine-tuning:
shared words keep their rows, new words get the mean embedding and bias. Prints the checkpoint's
path and the fairseq-train model flags that build the same model. See docs/pretrained.md.
"""
import argparse
import logging

from awd_fairseq.tools.cli import setup_logging
from awd_fairseq.tools.fastai_import import import_fastai_lm

logger = logging.getLogger("scripts.import_fastai_lm")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="fastai's state dict: lstm_fwd.pth / lstm_bwd.pth (or a Learner.save .pth)")
    parser.add_argument("itos", help="fastai's vocabulary saved with it: itos_wt103.pkl")
    parser.add_argument("--out", required=True, help="directory for model.pt and dict.txt")
    parser.add_argument("--vocab", help="a dict.txt (fairseq-preprocess's) to re-align the rows to; default: "
                        "fastai's own vocabulary, in its order")
    parser.add_argument("--drop-mult", type=float, default=1.0,
                        help="fastai's drop_mult: scales the language model's dropouts (0.1, 0.15, 0.25, 0.02, "
                        "weight drop 0.2) saved as the model's configuration")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="read the .pth with torch's full unpickler (only for a file you trust); by default "
                        "it is read with weights_only=True")
    return parser


def main(args: argparse.Namespace) -> None:
    result = import_fastai_lm(args.model, args.itos, args.out, vocab=args.vocab, drop_mult=args.drop_mult,
                              allow_pickle=args.allow_pickle)
    flags = " ".join(f"--{name.replace('_', '-')} {value}" for name, value in result.flags.items())
    print(result.checkpoint)
    print(f"--arch awd_lstm {flags}")


def cli_main() -> None:
    setup_logging()
    main(get_parser().parse_args())


if __name__ == "__main__":
    cli_main()
