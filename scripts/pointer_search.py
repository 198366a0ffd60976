"""Tune the cache pointer's theta and lambda on the validation split (as Grave et al. and
awd-lstm-lm do), then report the best pair's validation and test perplexity.

One forward pass per split: the model's last-layer outputs and target log-probabilities are kept
(N x H floats), then each theta costs one pointer pass (O(N * window * H)) and each lambda one
elementwise mix. Takes fairseq-eval-lm's arguments (data directory, --path, --bptt, --pointer-window ...):

    python scripts/pointer_search.py data-bin/ptb --path checkpoints/ptb/checkpoint_best.pt \\
        --pointer-window 500 --thetas 0.1,0.3,0.5,0.7,1.0,1.3 --lambdas 0.05,0.1,0.15,0.2,0.3
"""
import logging
import math
from typing import List, Tuple

import torch

import awd_fairseq  # noqa: F401  (registers the task)
from awd_fairseq.tools.eval_lm_cli import eval_lm_parser, load_eval_lm_models, parse_eval_lm_args
from awd_fairseq.modules.cache_pointer import CachePointer, mix_with
from awd_fairseq.tasks.cache_pointer_lm import window_outputs
from awd_fairseq.tools.cli import setup_logging

logger = logging.getLogger("scripts.pointer_search")


def collect(task, model, split) -> List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The split's windows `(h, targets, log p_model(targets))`, on the CPU."""
    return [(h.cpu().float(), y.cpu(), lp.cpu()) for h, y, lp in window_outputs(task, model, split)]


@torch.no_grad()
def cache_scores(windows, window: int, theta: float, skip_chunk_start: bool):
    """log p_cache(y_t), use mask and log p_model(y_t) for the whole split, each (N,)."""
    pointer = CachePointer(window=window, theta=theta, lambdah=1.0, skip_chunk_start=skip_chunk_start)
    log_cache, used = zip(*(pointer.target_cache_log_probs(h, y) for h, y, _ in windows))
    return torch.cat(log_cache), torch.cat(used), torch.cat([lp for _, _, lp in windows])


def mixture_ppl(log_cache, used, log_model, lambdah: float) -> float:
    log_cache, log_model = log_cache.double(), log_model.double()
    scores = torch.where(used, mix_with(lambdah, log_cache, log_model), log_model)
    return math.exp(-scores.mean().item())


def main(args) -> None:
    """Tune on the valid split, report on the test split; `args`: fairseq-eval-lm's, parsed."""
    task, models = load_eval_lm_models(args)
    thetas = [float(x) for x in args.thetas.split(",")]
    lambdas = [float(x) for x in args.lambdas.split(",")]
    cfg, model = task.cfg, models[0]
    if len(models) > 1:
        logger.warning("pointer_search tunes the first model only")

    valid = collect(task, model, args.valid_subset_name)
    plain_valid = math.exp(-torch.cat([lp for _, _, lp in valid]).double().mean().item())
    logger.info("valid: %d tokens, perplexity without the pointer %.2f", sum(y.numel() for _, y, _ in valid), plain_valid)
    best = (math.inf, None, None)
    for theta in thetas:
        log_cache, used, log_model = cache_scores(valid, cfg.pointer_window, theta, cfg.pointer_skip_chunk_start)
        row = [mixture_ppl(log_cache, used, log_model, lam) for lam in lambdas]
        logger.info("theta %-6g " + " ".join(f"{lam:g}:{ppl:.2f}" for lam, ppl in zip(lambdas, row)), theta)
        for lam, ppl in zip(lambdas, row):
            if ppl < best[0]:
                best = (ppl, theta, lam)
    del valid
    ppl_valid, theta, lam = best
    for name, value, grid in (("theta", theta, thetas), ("lambda", lam, lambdas)):
        if len(grid) > 1 and value in (min(grid), max(grid)):
            logger.warning("the best %s (%g) is at the edge of the grid: extend --%ss", name, value, name)

    test = collect(task, model, args.test_subset_name)
    log_cache, used, log_model = cache_scores(test, cfg.pointer_window, theta, cfg.pointer_skip_chunk_start)
    ppl_test, plain_test = mixture_ppl(log_cache, used, log_model, lam), math.exp(-log_model.double().mean().item())
    logger.info(
        "best on %s: --pointer-window %d --pointer-theta %g --pointer-lambda %g | valid ppl %.2f (%.2f without) | "
        "test ppl %.2f (%.2f without)", args.valid_subset_name, cfg.pointer_window, theta, lam, ppl_valid,
        plain_valid, ppl_test, plain_test)


def cli_main() -> None:
    parser = eval_lm_parser(__doc__.splitlines()[0])
    parser.add_argument("--thetas", default="0.1,0.3,0.5,0.662,0.8,1.0,1.3,1.6,2.0,2.5", help="comma-separated grid")
    parser.add_argument("--lambdas", default="0.05,0.08,0.1,0.1279,0.15,0.2,0.25,0.3", help="comma-separated grid")
    parser.add_argument("--valid-subset-name", default="valid", help="the split to tune on")
    parser.add_argument("--test-subset-name", default="test", help="the split to report")
    setup_logging()
    main(parse_eval_lm_args(parser))


if __name__ == "__main__":
    cli_main()
