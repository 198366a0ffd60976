"""Tune the cache pointer's theta and lambda on one split and score another with the best pair, as
Grave et al. (arXiv 1612.04426) and salesforce/awd-lstm-lm pointer.py tune on validation.

One forward pass per split keeps every window's last-layer features and target log-probabilities;
each theta then costs one pointer pass and each lambda one elementwise mix. Takes
fairseq-eval-lm's arguments (`--task awd_cache_pointer` by default) and writes a JSON summary:

    python -m awd_fairseq.tools.pointer_tuning data-bin/ptb --path checkpoints/ptb/checkpoint_best.pt \\
        --pointer-window 500 --json pointer.json
"""
import json
import logging
import math
from typing import Dict, List, Sequence, Tuple

import torch

from .cli import setup_logging
from .eval_lm_cli import eval_lm_parser, load_eval_lm_models, parse_eval_lm_args
from ..modules.cache_pointer import CachePointer, mix_with
from ..tasks.cache_pointer_lm import window_outputs

logger = logging.getLogger(__name__)

THETAS = "0.1,0.3,0.5,0.662,0.8,1.0,1.3,1.6,2.0,2.5"
LAMBDAS = "0.05,0.08,0.1,0.1279,0.15,0.2,0.25,0.3"


def collect(task, model, split) -> List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The split's windows `(h, targets, log p_model(targets))`, on the CPU."""
    return [(h.cpu().float(), y.cpu(), lp.cpu()) for h, y, lp in window_outputs(task, model, split)]


@torch.no_grad()
def split_scores(windows, window: int, theta: float, skip_chunk_start: bool):
    """log p_cache(y_t), where the cache is used, and log p_model(y_t) over the split, each (N,)."""
    pointer = CachePointer(window=window, theta=theta, lambdah=1.0, skip_chunk_start=skip_chunk_start)
    log_cache, used = zip(*(pointer.target_cache_log_probs(h, y) for h, y, _ in windows))
    return torch.cat(log_cache), torch.cat(used), torch.cat([lp for _, _, lp in windows])


def mixture_loss(log_cache, used, log_model, lambdah: float) -> float:
    """Mean negative log2-likelihood of the mixture (the model alone where the cache is unused)."""
    scores = torch.where(used, mix_with(lambdah, log_cache.double(), log_model.double()), log_model.double())
    return -scores.mean().item() / math.log(2)


def tune(task, model, thetas: Sequence[float], lambdas: Sequence[float], valid: str, test: str) -> Dict:
    """Best (theta, lambda) on `valid` by grid search; losses in bits per token on both splits."""
    cfg = task.cfg
    windows = collect(task, model, valid)
    best = (math.inf, None, None)
    for theta in thetas:
        scores = split_scores(windows, cfg.pointer_window, theta, cfg.pointer_skip_chunk_start)
        for lam in lambdas:
            loss = mixture_loss(*scores, lam)
            if loss < best[0]:
                best = (loss, theta, lam)
    plain_valid, n_valid = -torch.cat([lp for _, _, lp in windows]).double().mean().item() / math.log(2), sum(
        y.numel() for _, y, _ in windows)
    loss_valid, theta, lam = best
    for name, value, grid in (("theta", theta, thetas), ("lambda", lam, lambdas)):
        if len(grid) > 1 and value in (min(grid), max(grid)):
            logger.warning("the best %s (%g) is at the edge of the grid: extend the grid", name, value)
    windows = collect(task, model, test)
    log_cache, used, log_model = split_scores(windows, cfg.pointer_window, theta, cfg.pointer_skip_chunk_start)
    return {
        "pointer_window": cfg.pointer_window, "theta": theta, "lambda": lam,
        "valid": {"tokens": n_valid, "loss": loss_valid, "loss_without": plain_valid},
        "test": {"tokens": log_model.numel(), "loss": mixture_loss(log_cache, used, log_model, lam),
                 "loss_without": -log_model.double().mean().item() / math.log(2)},
    }


def main(args) -> Dict:
    task, models = load_eval_lm_models(args)
    floats = lambda s: [float(x) for x in s.split(",")]  # noqa: E731
    result = tune(task, models[0], floats(args.thetas), floats(args.lambdas), args.valid_subset_name,
                  args.test_subset_name)
    logger.info("pointer: %s", json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


def cli_main() -> None:
    parser = eval_lm_parser(__doc__.splitlines()[0])
    parser.add_argument("--thetas", default=THETAS, help="comma-separated grid of theta")
    parser.add_argument("--lambdas", default=LAMBDAS, help="comma-separated grid of lambda")
    parser.add_argument("--valid-subset-name", default="valid", help="the split to tune on")
    parser.add_argument("--test-subset-name", default="test", help="the split to report")
    parser.add_argument("--json", default=None, help="write the result here")
    setup_logging()
    main(parse_eval_lm_args(parser))


if __name__ == "__main__":
    cli_main()
