"""Tune dynamic evaluation's eta and lambda (and epsilon) on the validation split, as
benkrause/dynamic-evaluation `dynamiceval.py --grid` does, every pair scored by fairseq-eval-lm's
own loop under `--task awd_dynamic_eval`.

The gradient statistics are computed (or read from the cache next to the checkpoint) once; each
pair then costs one dynamic-evaluation pass over valid, starting from the checkpoint's weights.
The default grid is the reference's, eta in {3,4,5,6,7,10}e-5 and lambda in {1,2,3,5}e-3, both
scaled by --dyneval-bptt / 5. A pair that diverges scores infinity and the search goes on.
"""
import itertools
import logging
import math
from typing import Dict, Optional, Sequence

from .eval_lm_cli import eval_lm_parser, load_eval_lm_models, parse_eval_lm_args

logger = logging.getLogger(__name__)

ETAS = (3e-5, 4e-5, 5e-5, 6e-5, 7e-5, 1e-4)
LAMBDAS = (1e-3, 2e-3, 3e-3, 5e-3)


def load(eval_lm_argv: Sequence[str]):
    """(task, scorer) of fairseq-eval-lm arguments (`--task awd_dynamic_eval` by default)."""
    args = parse_eval_lm_args(eval_lm_parser("dynamic evaluation", "awd_dynamic_eval"), [str(a) for a in eval_lm_argv])
    return load_args(args)


def load_args(args):
    task, models = load_eval_lm_models(args)
    if len(models) != 1:
        raise ValueError("dynamic-evaluation tuning adapts one model: give a single checkpoint to --path")
    return task, models[0]


def perplexity(task, scorer, split: str, eta: float, lambdah: float, segments: int = 0,
               epsilon: Optional[float] = None) -> float:
    """Dynamic evaluation of `split` (its first `segments` segments if > 0) with these rates; inf if it diverges."""
    from fairseq_cli.eval_lm import eval_lm

    task.cfg.dyneval_lr, task.cfg.dyneval_lambda = eta, lambdah
    if epsilon is not None:
        task.cfg.dyneval_epsilon = epsilon
    if split not in task.datasets:
        task.load_dataset(split)
    batches = task.eval_lm_dataloader(task.dataset(split))
    if segments > 0:
        batches = itertools.islice(batches, segments)
    try:
        return float(eval_lm([scorer], task.source_dictionary, batches)["perplexity"])
    except FloatingPointError as e:  # this pair diverged: the next one starts again from the checkpoint
        logger.warning("eta %g lambda %g epsilon %g: %s", eta, lambdah, task.cfg.dyneval_epsilon, e)
        return math.inf


def default_grid(values: Sequence[float], scale: float):
    return [v * scale for v in values]


def search(task, scorer, etas: Sequence[float], lambdas: Sequence[float], epsilons: Sequence[float],
           split: str = "valid", segments: int = 0) -> Dict:
    """Every (eta, lambda, epsilon) on `split`: {"best": (eta, lambda, epsilon), "ppl": its
    perplexity, "grid": {(eta, lambda, epsilon): ppl}}; raises when every pair diverged."""
    grid = {}
    for epsilon in epsilons:
        for lambdah in lambdas:  # the reference's order
            for eta in etas:
                grid[eta, lambdah, epsilon] = ppl = perplexity(task, scorer, split, eta, lambdah, segments, epsilon)
                logger.info("eta %-10g lambda %-8g epsilon %-8g %s ppl %.3f", eta, lambdah, epsilon, split, ppl)
    best = min(grid, key=grid.get)
    if math.isinf(grid[best]):
        raise ValueError(f"every pair diverged on {split}: lower the etas or raise the epsilons "
                         f"(now {','.join(f'{e:g}' for e in epsilons)})")
    for name, value, values in (("eta", best[0], etas), ("lambda", best[1], lambdas), ("epsilon", best[2], epsilons)):
        if len(values) > 1 and value in (min(values), max(values)):
            logger.warning("the best %s (%g) is at the edge of the grid: extend the %ss", name, value, name)
    return {"best": best, "ppl": grid[best], "grid": grid}


def tune(task, scorer, etas=None, lambdas=None, epsilons=None, valid: str = "valid", test: str = "test",
         search_segments: int = 0, score: bool = True) -> Dict:
    """The search on `valid` (default grids: the reference's, scaled), then, with `score`, the
    best setting and the plain model (eta = lambda = 0) on the whole of `valid` and `test`."""
    scale = task.cfg.dyneval_bptt / 5.0
    etas = list(etas) if etas else default_grid(ETAS, scale)
    lambdas = list(lambdas) if lambdas else default_grid(LAMBDAS, scale)
    epsilons = list(epsilons) if epsilons else [task.cfg.dyneval_epsilon]
    found = search(task, scorer, etas, lambdas, epsilons, valid, search_segments)
    eta, lambdah, epsilon = found["best"]
    result = {"bptt": task.cfg.dyneval_bptt, "eta": eta, "lambda": lambdah, "epsilon": epsilon,
              "search_segments": search_segments, "search_ppl": found["ppl"],
              "grid": [{"eta": e, "lambda": la, "epsilon": ep, "ppl": p} for (e, la, ep), p in found["grid"].items()]}
    if score:
        whole = search_segments <= 0
        result["valid"] = found["ppl"] if whole else perplexity(task, scorer, valid, eta, lambdah, epsilon=epsilon)
        result["test"] = perplexity(task, scorer, test, eta, lambdah, epsilon=epsilon)
        result["plain_valid"], result["plain_test"] = (perplexity(task, scorer, s, 0.0, 0.0) for s in (valid, test))
    return result


def flags(result: Dict) -> list:
    """The fairseq-eval-lm flags of a tuned setting."""
    return ["--dyneval-bptt", str(result["bptt"]), "--dyneval-lr", f"{result['eta']:g}",
            "--dyneval-lambda", f"{result['lambda']:g}", "--dyneval-epsilon", f"{result['epsilon']:g}"]
