"""The comparison, model by model: train within the budget (fairseq-train), score valid and test
(fairseq-eval-lm), tune the cache pointer on valid and score test with it, then write the table,
the plots and a JSON of every figure into the output folder. Each step's log and `.done.json`
live in `<out>/<model>/`; a rerun with the same folder and arguments reuses the finished steps."""
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .. import pointer_tuning
from ..cli import USER_DIR, fairseq_tool
from . import report
from .runner import TrainProgress, reuse_or_call, run_step
from .specs import MODELS, model_specs

logger = logging.getLogger(__name__)


@dataclass
class Budget:
    updates: Optional[int] = None
    minutes: Optional[float] = None

    def flags(self) -> List[str]:
        if self.updates is None and self.minutes is None:
            raise ValueError("give a budget per model: --budget-updates N or --budget-minutes M")
        flags = ["--max-update", str(self.updates)] if self.updates is not None else []
        return flags + (["--stop-time-hours", repr(self.minutes / 60)] if self.minutes is not None else [])


@dataclass
class Comparison:
    data: str
    out: Path
    budget: Budget
    models: Sequence[str] = MODELS
    size: str = "recipe"
    awd_recipe: str = "ptb_awd_lstm"
    qrnn_recipe: str = "ptb_qrnn"
    mos_recipe: str = "ptb_awd_lstm_mos"
    char_level: bool = False
    pointer: bool = True
    pointer_window: int = 500
    cpu: bool = False
    log_interval: int = 50
    valid_every_updates: int = 0
    tensorboard: bool = False
    progress: bool = True
    extra_train: Dict[str, List[str]] = field(default_factory=dict)


def _device(c: Comparison) -> List[str]:
    return ["--cpu"] if c.cpu else []


def run_model(c: Comparison, spec) -> Dict:
    folder = c.out / spec.name
    ckpt = folder / "checkpoints"
    train = [fairseq_tool("fairseq-train"), c.data, *spec.train, "--user-dir", str(USER_DIR), "--save-dir", str(ckpt),
             "--log-format", "json", "--log-interval", str(c.log_interval), "--no-epoch-checkpoints",
             *c.budget.flags(), *_device(c), *c.extra_train.get(spec.name, [])]
    if c.valid_every_updates:
        train += ["--validate-interval-updates", str(c.valid_every_updates)]
    if c.tensorboard:
        train += ["--tensorboard-logdir", str(folder / "tensorboard")]
    progress = TrainProgress(f"{spec.name} train", c.budget.updates,
                             c.budget.minutes * 60 if c.budget.updates is None else None, c.progress)
    try:
        trained = run_step(f"{spec.name} train", train, folder / "train.log", on_poll=progress)
    finally:
        progress.close()
    best = str(ckpt / "checkpoint_best.pt")
    scoring = [c.data, "--path", best, "--user-dir", str(USER_DIR), *_device(c)]
    for split in ("valid", "test"):
        run_step(f"{spec.name} eval-lm {split}", [fairseq_tool("fairseq-eval-lm"), *scoring, *spec.eval, "--gen-subset", split],
                 folder / f"eval_{split}.log")
    pointer = None
    if c.pointer and spec.pointer is not None:
        argv = [*scoring, "--task", "awd_cache_pointer", "--pointer-window", str(c.pointer_window), *spec.pointer]
        pointer = reuse_or_call(f"{spec.name} pointer", {"argv": argv}, folder / "pointer.json",
                                lambda: pointer_tuning.tune_checkpoint(argv))
    return report.model_row(spec.name, folder, trained, spec.notes, pointer)


def check_scored_tokens(rows: List[Dict]) -> List[str]:
    """Every model and the pointer runs must score the same tokens of each split: the problems found."""
    problems = []
    for split, counts in report.scored_tokens(rows).items():
        if len(set(counts.values())) > 1:
            problems.append(f"{split}: the runs scored different numbers of tokens: {counts}")
    return problems


def run(c: Comparison) -> Dict:
    c.out.mkdir(parents=True, exist_ok=True)
    specs = model_specs(c.data, c.size, c.awd_recipe, c.qrnn_recipe, c.mos_recipe)
    unknown = [m for m in c.models if m not in specs]
    if unknown:
        raise ValueError(f"--models: unknown {unknown}; choose from {', '.join(specs)}")
    rows = []
    for i, name in enumerate(c.models, 1):
        logger.info("[%d/%d] %s", i, len(c.models), name)
        rows.append(run_model(c, specs[name]))
    problems = check_scored_tokens(rows)
    for p in problems:
        logger.error(p)
    table = report.markdown_table(rows, c.char_level)
    counts = report.scored_tokens(rows)
    notes = [f"Scored tokens: valid {sorted(set(counts['valid'].values()))}, test {sorted(set(counts['test'].values()))}"
             + (" (NOT identical across runs)" if problems else " (identical for every run)")]
    (c.out / "table.md").write_text(table + "\n" + "\n".join(notes) + "\n")
    plots = report.plot_curves(rows, c.out, c.char_level)
    (c.out / "results.json").write_text(json.dumps({"rows": rows, "problems": problems}, indent=1))
    return {"rows": rows, "table": table, "plots": plots, "problems": problems}
