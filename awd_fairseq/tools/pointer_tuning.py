"""Tune the cache pointer's theta and lambda on one split and score another with the best pair, as
Grave et al. (arXiv 1612.04426) and salesforce/awd-lstm-lm pointer.py tune on validation.

One forward pass per split keeps every window's last-layer features and target log-probabilities;
each theta then costs one pointer pass (O(N * window * H)) and each lambda one elementwise mix.
Losses are mean negative log2-likelihoods (bits per token), as fairseq-eval-lm reports them.
"""
import logging
import math
from typing import Dict, Iterator, List, Sequence, Tuple

import torch
from torch import Tensor

from awd_fairseq.modules.cache_pointer import CachePointer, mix_with

from .eval_lm_cli import eval_lm_parser, load_eval_lm_models, parse_eval_lm_args

logger = logging.getLogger(__name__)

THETAS = (0.1, 0.3, 0.5, 0.662, 0.8, 1.0, 1.3, 1.6, 2.0, 2.5)
LAMBDAS = (0.05, 0.08, 0.1, 0.1279, 0.15, 0.2, 0.25, 0.3)

Windows = List[Tuple[Tensor, Tensor, Tensor]]


@torch.no_grad()
def window_outputs(task, scorer, split: str) -> Iterator[Tuple[Tensor, Tensor, Tensor]]:
    """`split` read as fairseq-eval-lm reads it under `task` (awd_cache_pointer), window by window:
    `(h (T, H), targets (T,), log p_model(targets) (T,))` from the StreamScorer's model."""
    if split not in task.datasets:
        task.load_dataset(split)
    scorer.eval()
    device = next(scorer.parameters()).device
    for sample in task.eval_lm_dataloader(task.dataset(split)):
        net_input, target = sample["net_input"], sample["target"].to(device)
        h, lprobs = scorer.model_outputs(net_input["src_tokens"].to(device), target, net_input["stream_state"])
        yield h[0], target[0], lprobs[0]


def collect(task, scorer, split: str) -> Windows:
    """The split's windows `(h, targets, log p_model(targets))`, on the CPU."""
    return [(h.cpu().float(), y.cpu(), lp.cpu()) for h, y, lp in window_outputs(task, scorer, split)]


@torch.no_grad()
def split_scores(windows: Windows, window: int, theta: float, skip_chunk_start: bool):
    """log p_cache(y_t), where the cache is used, and log p_model(y_t) over the split, each (N,)."""
    pointer = CachePointer(window=window, theta=theta, lambdah=1.0, skip_chunk_start=skip_chunk_start)
    log_cache, used = zip(*(pointer.target_cache_log_probs(h, y) for h, y, _ in windows))
    return torch.cat(log_cache), torch.cat(used), torch.cat([lp for _, _, lp in windows])


def mixture_loss(log_cache: Tensor, used: Tensor, log_model: Tensor, lambdah: float) -> float:
    """Mean negative log2-likelihood of the mixture (the model alone where the cache is unused)."""
    scores = torch.where(used, mix_with(lambdah, log_cache.double(), log_model.double()), log_model.double())
    return -scores.mean().item() / math.log(2)


def model_loss(windows: Windows) -> float:
    return -torch.cat([lp for _, _, lp in windows]).double().mean().item() / math.log(2)


def tune(task, scorer, thetas: Sequence[float] = THETAS, lambdas: Sequence[float] = LAMBDAS,
         valid: str = "valid", test: str = "test") -> Dict:
    """Best (theta, lambda) on `valid` by grid search, and both splits scored with it. Returns
    {pointer_window, theta, lambda, grid: {"theta,lambda": valid loss}, valid/test: {tokens, loss,
    loss_without}}, losses in bits per token."""
    cfg = task.cfg
    windows = collect(task, scorer, valid)
    grid = {}
    for theta in thetas:
        scores = split_scores(windows, cfg.pointer_window, theta, cfg.pointer_skip_chunk_start)
        for lam in lambdas:
            grid[theta, lam] = mixture_loss(*scores, lam)
    theta, lam = min(grid, key=grid.get)
    for name, value, values in (("theta", theta, thetas), ("lambda", lam, lambdas)):
        if len(values) > 1 and value in (min(values), max(values)):
            logger.warning("the best %s (%g) is at the edge of the grid: extend the grid", name, value)
    result = {"pointer_window": cfg.pointer_window, "theta": theta, "lambda": lam,
              "grid": {f"{t:g},{la:g}": loss for (t, la), loss in grid.items()},
              "valid": {"tokens": sum(y.numel() for _, y, _ in windows), "loss": grid[theta, lam],
                        "loss_without": model_loss(windows)}}
    windows = collect(task, scorer, test)
    log_cache, used, log_model = split_scores(windows, cfg.pointer_window, theta, cfg.pointer_skip_chunk_start)
    result["test"] = {"tokens": log_model.numel(), "loss": mixture_loss(log_cache, used, log_model, lam),
                      "loss_without": model_loss(windows)}
    return result


def tune_checkpoint(eval_lm_argv: Sequence[str], thetas: Sequence[float] = THETAS,
                    lambdas: Sequence[float] = LAMBDAS, valid: str = "valid", test: str = "test") -> Dict:
    """`tune` on the checkpoint that fairseq-eval-lm arguments name (`--task awd_cache_pointer` by
    default; data directory, --path, --pointer-window, --bptt, --stream-context, --cpu ...)."""
    args = parse_eval_lm_args(eval_lm_parser("pointer tuning", "awd_cache_pointer"), [str(a) for a in eval_lm_argv])
    task, models = load_eval_lm_models(args)
    if len(models) > 1:
        logger.warning("pointer tuning uses the first model only")
    return tune(task, models[0], thetas, lambdas, valid, test)
