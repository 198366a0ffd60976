"""Tune the cache pointer's theta and lambda on the validation split (as Grave et al. and
awd-lstm-lm do), then report the best pair's validation and test perplexity.

Takes fairseq-eval-lm's arguments (data directory, --path, --bptt, --pointer-window, --cpu ...):

    python scripts/pointer_search.py data-bin/ptb --path checkpoints/ptb/checkpoint_best.pt \\
        --pointer-window 500 --thetas 0.1,0.3,0.5,0.7,1.0,1.3 --lambdas 0.05,0.1,0.15,0.2,0.3
"""
import json
import logging

from awd_fairseq.tools.cli import setup_logging
from awd_fairseq.tools.eval_lm_cli import eval_lm_parser, load_eval_lm_models, parse_eval_lm_args
from awd_fairseq.tools.pointer_tuning import LAMBDAS, THETAS, tune

logger = logging.getLogger("scripts.pointer_search")


def floats(text: str):
    return [float(x) for x in text.split(",")]


def main(args) -> dict:
    task, models = load_eval_lm_models(args)
    if len(models) > 1:
        logger.warning("pointer_search tunes the first model only")
    result = tune(task, models[0], floats(args.thetas), floats(args.lambdas), args.valid_subset_name,
                  args.test_subset_name)
    for key, loss in result["grid"].items():
        logger.info("theta,lambda %-12s %s ppl %.2f", key, args.valid_subset_name, 2 ** loss)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    v, t = result["valid"], result["test"]
    print(f"best on {args.valid_subset_name}: --pointer-window {result['pointer_window']} --pointer-theta "
          f"{result['theta']:g} --pointer-lambda {result['lambda']:g} | {args.valid_subset_name} ppl "
          f"{2 ** v['loss']:.2f} ({2 ** v['loss_without']:.2f} without) | {args.test_subset_name} ppl "
          f"{2 ** t['loss']:.2f} ({2 ** t['loss_without']:.2f} without)")
    return result


def cli_main() -> None:
    parser = eval_lm_parser(__doc__.splitlines()[0])
    parser.add_argument("--thetas", default=",".join(map(str, THETAS)), help="comma-separated grid of theta")
    parser.add_argument("--lambdas", default=",".join(map(str, LAMBDAS)), help="comma-separated grid of lambda")
    parser.add_argument("--valid-subset-name", default="valid", help="the split to tune on")
    parser.add_argument("--test-subset-name", default="test", help="the split to report")
    parser.add_argument("--json", default=None, help="also write the result (losses in bits) here")
    setup_logging()
    main(parse_eval_lm_args(parser))


if __name__ == "__main__":
    cli_main()
