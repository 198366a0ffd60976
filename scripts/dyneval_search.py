"""Tune dynamic evaluation's eta and lambda on the validation split (as benkrause/dynamic-evaluation
`dynamiceval.py --grid` does), then report the best pair's validation and test perplexity.

The gradient statistics are computed (or read from the cache next to the checkpoint) once; each
pair then costs one dynamic-evaluation pass over valid, each starting from the checkpoint's
weights. The default grid is the reference's, eta in {3,4,5,6,7,10}e-5 and lambda in
{1,2,3,5}e-3, both scaled by --bptt / 5. Takes fairseq-eval-lm's arguments (data directory,
--path, --bptt, --dyneval-* ...):

    python scripts/dyneval_search.py data-bin/ptb --path checkpoints/ptb/checkpoint_best.pt --bptt 5

`--search-segments N` tunes on the first N segments of valid only (the reference's --gridfast
uses the first 30k tokens); the best pair is then scored on the whole of valid and test, unless
`--tune-only` (scripts/dyneval_table.py scores them itself).
"""
import itertools
import logging
import math

import torch

import awd_fairseq  # noqa: F401  (registers the task)
from awd_fairseq.tools.cli import setup_logging

logger = logging.getLogger("dyneval_search")

ETAS = (3e-5, 4e-5, 5e-5, 6e-5, 7e-5, 1e-4)
LAMBDAS = (1e-3, 2e-3, 3e-3, 5e-3)


def get_parser():
    from fairseq import options

    parser = options.get_eval_lm_parser(default_task="awd_dynamic_eval")
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--etas", help="comma-separated eta grid (default: the reference's, scaled by bptt/5)")
    parser.add_argument("--lambdas", help="comma-separated lambda grid (default: the reference's, scaled by bptt/5)")
    parser.add_argument("--epsilons", help="comma-separated epsilon grid (default: --dyneval-epsilon alone)")
    parser.add_argument("--valid-subset-name", default="valid", help="the split to tune on")
    parser.add_argument("--test-subset-name", default="test", help="the split to report")
    parser.add_argument("--search-segments", type=int, default=0, help="tune on the first N segments of valid (0: all)")
    parser.add_argument("--tune-only", action="store_true",
                        help="print the best setting and stop: no runs on the whole of valid and test")
    return parser


def load(args):
    """(task, model): the awd_dynamic_eval task and its DynamicEvalLM around the checkpoint."""
    from fairseq import checkpoint_utils, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    models, _, task = checkpoint_utils.load_model_ensemble_and_task(
        [cfg.common_eval.path], arg_overrides=eval(cfg.common_eval.model_overrides), task=task
    )
    if len(models) != 1:
        raise ValueError("dyneval_search tunes one model: give a single checkpoint to --path")
    model = models[0]
    if torch.cuda.is_available() and not cfg.common.cpu:
        model = model.cuda()
    return task, model.eval()


def perplexity(task, model, split, eta, lambdah, segments=0, epsilon=None):
    """Dynamic evaluation of `split` with (eta, lambda[, epsilon]), scored by fairseq-eval-lm's own loop."""
    from fairseq_cli.eval_lm import eval_lm

    task.cfg.dyneval_lr, task.cfg.dyneval_lambda = eta, lambdah
    if epsilon is not None:
        task.cfg.dyneval_epsilon = epsilon
    if split not in task.datasets:
        task.load_dataset(split)
    # no loader worker: one stream at batch size 1 gains nothing from it, and a run cut short
    # (--search-segments, a diverged pair) would leave the worker process alive
    batches = task.eval_lm_dataloader(task.dataset(split), num_workers=0)
    if segments > 0:
        batches = itertools.islice(batches, segments)
    try:
        return float(eval_lm([model], task.source_dictionary, batches)["perplexity"])
    except FloatingPointError as e:  # this pair diverged: the next one starts again from the checkpoint
        logger.warning("eta %g lambda %g epsilon %g: %s", eta, lambdah, task.cfg.dyneval_epsilon, e)
        return math.inf


def grid(text, default, scale):
    return [float(x) for x in text.split(",")] if text else [x * scale for x in default]


def main(args):
    task, model = load(args)
    scale = task.cfg.bptt / 5.0
    etas, lambdas = grid(args.etas, ETAS, scale), grid(args.lambdas, LAMBDAS, scale)
    epsilons = grid(args.epsilons, (task.cfg.dyneval_epsilon,), 1.0)
    valid, test = args.valid_subset_name, args.test_subset_name
    results = {}
    for epsilon in epsilons:
        for lambdah in lambdas:  # the reference's order
            for eta in etas:
                ppl = perplexity(task, model, valid, eta, lambdah, args.search_segments, epsilon)
                results[eta, lambdah, epsilon] = ppl
                logger.info("eta %-10g lambda %-8g epsilon %-8g %s ppl %.3f", eta, lambdah, epsilon, valid, ppl)
    best = min(results, key=results.get)
    if math.isinf(results[best]):
        raise SystemExit(f"every pair diverged on {valid}: lower --etas or raise --epsilons "
                         f"(now {','.join(f'{e:g}' for e in epsilons)})")
    eta, lambdah, epsilon = best
    for name, value, values in (("eta", eta, etas), ("lambda", lambdah, lambdas), ("epsilon", epsilon, epsilons)):
        if len(values) > 1 and value in (min(values), max(values)):
            logger.warning("the best %s (%g) is at the edge of the grid: extend --%ss", name, value, name)
    setting = (f"--bptt {task.cfg.bptt} --dyneval-lr {eta:g} --dyneval-lambda {lambdah:g} "
               f"--dyneval-epsilon {epsilon:g}")
    if args.tune_only:
        scope = f"the first {args.search_segments} segments" if args.search_segments > 0 else "all of it"
        print(f"best on {valid}: {setting} | {valid} ppl {results[best]:.2f} on {scope}")
        return {"eta": eta, "lambda": lambdah, "epsilon": epsilon, "grid": results}
    full = args.search_segments <= 0
    ppl_valid = results[best] if full else perplexity(task, model, valid, eta, lambdah, epsilon=epsilon)
    ppl_test = perplexity(task, model, test, eta, lambdah, epsilon=epsilon)
    plain_valid, plain_test = (perplexity(task, model, s, 0.0, 0.0) for s in (valid, test))
    print(f"best on {valid}: {setting} | {valid} ppl {ppl_valid:.2f} ({plain_valid:.2f} without) | "
          f"{test} ppl {ppl_test:.2f} ({plain_test:.2f} without)")
    return {"eta": eta, "lambda": lambdah, "epsilon": epsilon, "valid": ppl_valid, "test": ppl_test,
            "plain_valid": plain_valid, "plain_test": plain_test, "grid": results}


def cli_main():
    from fairseq import options

    setup_logging()
    args = options.parse_args_and_arch(get_parser())
    main(args)


if __name__ == "__main__":
    cli_main()
