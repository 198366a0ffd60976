"""Write N words sampled from an awd_lstm / qrnn checkpoint, like salesforce/awd-lstm-lm generate.py.

One decoder step per word, on fairseq's incremental state (lm_inference.sample_tokens). Sampling
is `softmax(log p / temperature)`, which cannot overflow at low temperature (the original's
`exp(logits / temperature)` does, and torch.multinomial then fails); `--temperature 0` is greedy.
The original starts from a random word; here the text starts a sentence (after `</s>`), or
continues `--prime`. `</s>` is written as a line break.

    python scripts/generate.py data-bin/ptb --path checkpoints/ptb/checkpoint_best.pt \\
        --words 1000 --temperature 1.0 --seed 1111 --outf generated.txt
"""
import argparse
import logging
import sys

import torch

import awd_fairseq  # noqa: F401  (registers the models and task)
from awd_fairseq.tasks.lm_inference import sample_tokens
from awd_fairseq.tools.cli import setup_logging

logger = logging.getLogger("scripts.generate")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="the fairseq-preprocess directory the model was trained on (dict.txt)")
    parser.add_argument("--path", required=True, help="checkpoint")
    parser.add_argument("--words", type=int, default=1000, help="number of words to write")
    parser.add_argument("--temperature", type=float, default=1.0, help="higher is more diverse; 0 is greedy")
    parser.add_argument("--seed", type=int, default=1111, help="random seed of the sampler")
    parser.add_argument("--prime", default="", help="text to continue")
    parser.add_argument("--outf", default="generated.txt", help="output file ('-' for stdout)")
    parser.add_argument("--log-interval", type=int, default=100, help="log progress every N words")
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even if CUDA is available")
    return parser


def main(args: argparse.Namespace) -> None:
    from fairseq import checkpoint_utils

    models, _, task = checkpoint_utils.load_model_ensemble_and_task([args.path], arg_overrides={"data": args.data})
    model = models[0]
    if torch.cuda.is_available() and not args.cpu:
        model.cuda()
    dictionary = task.target_dictionary
    prime = dictionary.encode_line(args.prime, add_if_not_exist=False, append_eos=False).long()
    prime = torch.cat([torch.tensor([dictionary.eos()]), prime])  # (T,) a sentence start, then the prime
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    out = sys.stdout if args.outf == "-" else open(args.outf, "w", encoding="utf-8")
    try:
        if args.prime:
            out.write(args.prime + " ")
        for i, token in enumerate(sample_tokens(model, args.words, args.temperature, prime, generator=generator)):
            out.write("\n" if token == dictionary.eos() else dictionary[token] + " ")
            if (i + 1) % args.log_interval == 0:
                logger.info("generated %d/%d words", i + 1, args.words)
        out.write("\n")
    finally:
        if out is not sys.stdout:
            out.close()


def cli_main() -> None:
    parser = get_parser()
    args = parser.parse_args()
    if args.temperature < 0:
        parser.error("--temperature must be >= 0")
    setup_logging()
    main(args)


if __name__ == "__main__":
    cli_main()
