"""Tune dynamic evaluation's eta and lambda on the validation split (as benkrause/dynamic-evaluation
`dynamiceval.py --grid` does), then report the best pair's validation and test perplexity.

Takes fairseq-eval-lm's arguments (data directory, --path, --dyneval-bptt, --dyneval-* ...):

    python scripts/dyneval_search.py data-bin/ptb --path checkpoints/ptb/checkpoint_best.pt

`--search-segments N` tunes on the first N segments of valid only (the reference's --gridfast
uses the first 30k tokens); the best pair is then scored on the whole of valid and test, unless
`--tune-only`.
"""
import json
import logging

from awd_fairseq.tools import dyneval_tuning
from awd_fairseq.tools.cli import setup_logging
from awd_fairseq.tools.eval_lm_cli import eval_lm_parser, parse_eval_lm_args

logger = logging.getLogger("scripts.dyneval_search")


def floats(text):
    return [float(x) for x in text.split(",")] if text else None


def main(args) -> dict:
    task, scorer = dyneval_tuning.load_args(args)
    result = dyneval_tuning.tune(task, scorer, floats(args.etas), floats(args.lambdas), floats(args.epsilons),
                                 args.valid_subset_name, args.test_subset_name, args.search_segments,
                                 score=not args.tune_only)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    setting = " ".join(dyneval_tuning.flags(result))
    valid, test = args.valid_subset_name, args.test_subset_name
    if args.tune_only:
        scope = f"the first {args.search_segments} segments" if args.search_segments > 0 else "all of it"
        print(f"best on {valid}: {setting} | {valid} ppl {result['search_ppl']:.2f} on {scope}")
    else:
        print(f"best on {valid}: {setting} | {valid} ppl {result['valid']:.2f} ({result['plain_valid']:.2f} without) "
              f"| {test} ppl {result['test']:.2f} ({result['plain_test']:.2f} without)")
    return result


def cli_main():
    parser = eval_lm_parser(__doc__.splitlines()[0], default_task="awd_dynamic_eval")
    parser.add_argument("--etas", help="comma-separated eta grid (default: the reference's, scaled by bptt/5)")
    parser.add_argument("--lambdas", help="comma-separated lambda grid (default: the reference's, scaled by bptt/5)")
    parser.add_argument("--epsilons", help="comma-separated epsilon grid (default: --dyneval-epsilon alone)")
    parser.add_argument("--valid-subset-name", default="valid", help="the split to tune on")
    parser.add_argument("--test-subset-name", default="test", help="the split to report")
    parser.add_argument("--search-segments", type=int, default=0, help="tune on the first N segments of valid (0: all)")
    parser.add_argument("--tune-only", action="store_true",
                        help="print the best setting and stop: no runs on the whole of valid and test")
    parser.add_argument("--json", default=None, help="also write the result here")
    setup_logging()
    main(parse_eval_lm_args(parser))


if __name__ == "__main__":
    cli_main()
