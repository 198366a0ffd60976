"""One recipe end to end, resumable: train, fine-tune, the cache pointer with the original README's
settings and dynamic evaluation with the reference code's, each scored on valid and test by
fairseq-eval-lm and set beside the published figures (`Recipe.published`).

Every step is a fairseq command with its log under `<dir>/logs/`; a finished step leaves a
`.done.json` beside its log and is skipped by the next run (compare/runner.py `run_step`). A step
killed part-way has none and runs again: fairseq-train then resumes from the stage's
`checkpoint_last.pt` (fairseq's `--restore-file` default), so a run killed at any point continues
where it stopped.

    from awd_fairseq.tools import reproduce
    rows = reproduce.run(recipes.RECIPES["ptb_awd_lstm"], "data-bin/ptb", Path("runs/ptb_awd_lstm"))

`epoch_scale` shortens the schedule proportionally (the epochs of training and fine-tuning and the
`--when` milestones, each at least 1) for a smoke test.
"""
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from . import fairseq_logs
from .cli import USER_DIR, fairseq_command
from .compare.runner import run_step
from .recipes import Figures, Recipe, compose, stage_commands

logger = logging.getLogger(__name__)

SCORED = {"train": "the trained model", "finetune": "fine-tuned", "pointer": "with the cache pointer",
          "dyneval": "with dynamic evaluation"}
VALID_STREAMS = 10  # main.py reports validation over 10 streams (eval_batch_size), test over 1; pointer.py
# and dynamiceval.py read one stream for both


@dataclass
class StageResult:
    stage: str
    valid: float  # perplexity, or bits per character
    test: float
    published: Figures
    seconds: float  # this stage's commands, as they ran (0 when every step was reused)


def schedule_overrides(config_name: str, epoch_scale: float) -> List[str]:
    """hydra overrides that scale a training stage's epochs and --when milestones by `epoch_scale`."""
    if epoch_scale == 1.0:
        return []
    if not 0 < epoch_scale <= 1:
        raise ValueError(f"--max-epoch-scale {epoch_scale} must lie in (0, 1]")
    cfg = compose(config_name)
    scale = lambda epochs: max(1, math.ceil(epochs * epoch_scale))  # noqa: E731
    overrides = [f"optimization.max_epoch={scale(cfg.optimization.max_epoch)}"]
    when = list(cfg.lr_scheduler.get("when") or [])
    if when:
        overrides.append(f"lr_scheduler.when=[{','.join(str(scale(w)) for w in when)}]")
    return overrides


def _checkpoint(save_dir: Path, stage: str) -> Path:
    return Path(f"{save_dir}_finetune" if stage == "finetune" else save_dir) / "checkpoint_best.pt"


def _score(label: str, recipe: Recipe, data: str, checkpoint: Path, task_flags: Sequence[str], logs: Path,
           char_level: bool):
    """(valid, test, seconds) of one checkpoint under one fairseq-eval-lm task."""
    figures, seconds = [], 0.0
    plain = "awd_language_modeling" in task_flags  # the pointer and dynamic evaluation read one stream
    for split, streams in (("valid", VALID_STREAMS if plain else 1), ("test", 1)):
        cmd = [*fairseq_command("fairseq-eval-lm"), data, "--user-dir", str(USER_DIR), "--path", str(checkpoint),
               "--gen-subset", split, *(["--test-batch-size", str(streams)] if plain else []), "--no-progress-bar",
               *task_flags]
        log = logs / f"{label}_{split}.log"
        step = run_step(f"{recipe.name} {label} {split}", cmd, log)
        seconds += 0.0 if step["reused"] else step["seconds"]
        summary = fairseq_logs.eval_lm_summary(log)
        figures.append(summary.loss_base2 if char_level else summary.perplexity)
    return figures[0], figures[1], seconds


def _flags(options) -> List[str]:
    return [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]


def run(recipe: Recipe, data: str, out: Path, overrides: Sequence[str] = (), epoch_scale: float = 1.0,
        stages: Optional[Sequence[str]] = None, scoring: Sequence[str] = ()) -> List[StageResult]:
    """Run (or resume) the recipe's stages into `out`; the results of the stages run so far.
    `overrides`: hydra overrides for the training stages; `stages`: stop after the last of these
    (default: all); `scoring`: extra fairseq-eval-lm flags (e.g. --cpu)."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = str(Path(data).resolve())
    logs, save_dir = out / "logs", out / "checkpoints" / "train"
    order = available_stages(recipe)
    wanted = order if not stages else order[:max(order.index(s) for s in stages) + 1]
    char_level = is_char_level(recipe)
    training = {name: list(overrides) for name in ("train", "finetune")}
    training["train"] += schedule_overrides(recipe.name, epoch_scale)
    if recipe.finetune:
        training["finetune"] += schedule_overrides(recipe.name + "_finetune", epoch_scale)
    results = []
    final = "finetune" if recipe.finetune else "train"
    for stage in wanted:
        seconds = 0.0
        if stage in ("train", "finetune"):
            cmd = stage_commands(recipe, data, str(save_dir), overrides=training[stage])[stage]
            step = run_step(f"{recipe.name} {stage}", cmd, logs / f"{stage}.log", cwd=out)  # hydra's log: in out
            seconds += 0.0 if step["reused"] else step["seconds"]
            valid, test, more = _score(stage, recipe, data, _checkpoint(save_dir, stage),
                                       ["--task", "awd_language_modeling", *scoring], logs, char_level)
        elif stage == "pointer":
            valid, test, more = _score(stage, recipe, data, _checkpoint(save_dir, final),
                                       ["--task", "awd_cache_pointer", *_flags(recipe.pointer), *scoring], logs,
                                       char_level)
        else:
            valid, test, more = _score(stage, recipe, data, _checkpoint(save_dir, final),
                                       ["--task", "awd_dynamic_eval", *_flags(recipe.dyneval), *scoring], logs,
                                       char_level)
        result = StageResult(stage, valid, test, recipe.published.get(stage, (None, None)), seconds + more)
        logger.info("%s", describe(result, char_level))
        results.append(result)
    return results


def available_stages(recipe: Recipe) -> List[str]:
    return (["train"] + (["finetune"] if recipe.finetune else []) + (["pointer"] if recipe.pointer else [])
            + (["dyneval"] if recipe.dyneval else []))


def _figure(value: Optional[float], char_level: bool) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if char_level else f"{value:.2f}"


def describe(result: StageResult, char_level: bool = False) -> str:
    unit = "bpc" if char_level else "ppl"
    published = " / ".join(_figure(v, char_level) for v in result.published)
    return (f"{result.stage} ({SCORED[result.stage]}): valid {_figure(result.valid, char_level)} / test "
            f"{_figure(result.test, char_level)} {unit} (published {published}; {result.seconds:.0f} s)")


def table(recipe: Recipe, results: Sequence[StageResult], char_level: bool = False) -> str:
    """Markdown: one row per stage, this run's figures beside the published ones."""
    unit = "bpc" if char_level else "perplexity"
    lines = [f"| {recipe.name} | valid {unit} | test {unit} | published valid | published test | seconds |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.stage} ({SCORED[r.stage]}) | {_figure(r.valid, char_level)} | "
                     f"{_figure(r.test, char_level)} | {_figure(r.published[0], char_level)} | "
                     f"{_figure(r.published[1], char_level)} | {r.seconds:.0f} |")
    return "\n".join(lines)


def is_char_level(recipe: Recipe) -> bool:
    return bool(compose(recipe.name).criterion.get("char_level", False))


def as_dicts(results: Sequence[StageResult]) -> List[Dict]:
    return [dict(stage=r.stage, valid=r.valid, test=r.test, published=list(r.published), seconds=r.seconds)
            for r in results]
