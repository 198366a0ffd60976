"""The comparison, model by model: calibrate (for a time or token budget), train within the budget
(fairseq-train), score valid and test (fairseq-eval-lm), tune the cache pointer and dynamic
evaluation on valid and score both splits with the best settings (fairseq-eval-lm again, timed),
then write the table, the plots and a JSON of every figure into the output folder. Each step's
log and `.done.json` (or result file) live in `<out>/<model>/`; a rerun with the same folder and
arguments reuses the finished steps, so several processes may each run a subset of the models
into the same folder and a last run writes the table."""
import importlib.util
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .. import dyneval_tuning, pointer_tuning
from ..cli import USER_DIR, fairseq_command
from ..recipes import RECIPES
from . import report
from .budget import Budget, calibration_flags, measured_speed
from .runner import TrainProgress, reuse_or_call, run_step
from .specs import MODELS, ModelSpec, model_specs

logger = logging.getLogger(__name__)


@dataclass
class DynevalSearch:
    """How dynamic evaluation is tuned: the grids (None: the reference's, scaled by the segment
    length) on the first `segments` segments of valid (0: all of it); `statistics_segments` caps the
    training segments of the gradient statistics (0: the whole training split)."""

    etas: Optional[List[float]] = None
    lambdas: Optional[List[float]] = None
    segments: int = 2000
    statistics_segments: int = 0

    def describe(self) -> str:
        grid = "the reference's grid" if self.etas is None and self.lambdas is None else "the grid"
        where = f"the first {self.segments} segments of valid" if self.segments else "all of valid"
        stats = (f", statistics from {self.statistics_segments} training segments" if self.statistics_segments
                 else "")
        return f"eta and lambda tuned over {grid} on {where}{stats}"


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
    mogrifier_recipe: str = "ptb_mogrifier"
    char_level: bool = False
    pointer: bool = True
    pointer_window: int = 500
    dyneval: Optional[DynevalSearch] = field(default_factory=DynevalSearch)
    dyneval_models: Optional[Sequence[str]] = None  # the models given the dynamic-evaluation columns (None: all)
    calibration_updates: int = 30
    cpu: bool = False
    log_interval: int = 50
    valid_every_updates: int = 0
    tensorboard: bool = False
    progress: bool = True
    extra_train: Dict[str, List[str]] = field(default_factory=dict)


def _device(c: Comparison) -> List[str]:
    return ["--cpu"] if c.cpu else []


def budget_updates(c: Comparison, spec: ModelSpec, folder: Path) -> int:
    if not c.budget.calibrated:
        return c.budget.updates()
    cmd = [*fairseq_command("fairseq-train"), c.data, *spec.train, "--user-dir", str(USER_DIR),
           *calibration_flags(c.calibration_updates), *_device(c), *c.extra_train.get(spec.name, [])]
    run_step(f"{spec.name} calibration", cmd, folder / "calibration.log")
    speed = measured_speed(folder / "calibration.log")
    updates = c.budget.updates(speed)
    logger.info("%s: %.3f s and %.0f tokens per update -> %d updates", spec.name, speed.seconds_per_update,
                speed.tokens_per_update, updates)
    return updates


def train(c: Comparison, spec: ModelSpec, folder: Path, updates: int) -> Dict:
    ckpt = folder / "checkpoints"
    cmd = [*fairseq_command("fairseq-train"), c.data, *spec.train, *spec.schedule(updates), "--user-dir", str(USER_DIR),
           "--save-dir", str(ckpt), "--log-format", "json", "--log-interval", str(c.log_interval),
           "--no-epoch-checkpoints", "--max-update", str(updates), *_device(c), *c.extra_train.get(spec.name, [])]
    if c.valid_every_updates:
        cmd += ["--validate-interval-updates", str(c.valid_every_updates)]
    if c.tensorboard:
        cmd += ["--tensorboard-logdir", str(folder / "tensorboard")]
    progress = TrainProgress(f"{spec.name} train", updates, None, c.progress)
    try:
        return run_step(f"{spec.name} train", cmd, folder / "train.log", on_poll=progress)
    finally:
        progress.close()


def score(c: Comparison, spec: ModelSpec, folder: Path, label: str, flags: List[str]) -> Dict[str, Dict]:
    """fairseq-eval-lm on valid and test: {split: {loss, tokens, seconds}} read from its summary."""
    best = str(folder / "checkpoints" / "checkpoint_best.pt")
    out = {}
    for split in ("valid", "test"):
        log = folder / f"{label}_{split}.log"
        run_step(f"{spec.name} {label} {split}", [*fairseq_command("fairseq-eval-lm"), c.data, "--path", best,
                                                  "--user-dir", str(USER_DIR), *_device(c), *flags,
                                                  "--gen-subset", split], log)
        out[split] = report.eval_summary(log)
    return out


def checkpoint_args(c: Comparison, folder: Path) -> List[str]:
    return [c.data, "--path", str(folder / "checkpoints" / "checkpoint_best.pt"), "--user-dir", str(USER_DIR),
            *_device(c)]


def tuned_pointer(c: Comparison, spec: ModelSpec, folder: Path) -> Optional[Dict]:
    if not c.pointer or spec.pointer is None:
        return None
    flags = ["--task", "awd_cache_pointer", "--pointer-window", str(c.pointer_window), *spec.pointer]
    argv = [*checkpoint_args(c, folder), *flags]
    tuned = reuse_or_call(f"{spec.name} pointer tuning", {"argv": argv}, folder / "pointer.json",
                          lambda: pointer_tuning.tune_checkpoint(argv))
    best = ["--pointer-theta", f"{tuned['theta']:g}", "--pointer-lambda", f"{tuned['lambda']:g}"]
    return {"theta": tuned["theta"], "lambda": tuned["lambda"], **score(c, spec, folder, "pointer", [*flags, *best])}


def tuned_dyneval(c: Comparison, spec: ModelSpec, folder: Path) -> Optional[Dict]:
    if c.dyneval is None or spec.dyneval is None or (c.dyneval_models is not None and spec.name not in c.dyneval_models):
        return None
    search = c.dyneval
    flags = ["--task", "awd_dynamic_eval", "--dyneval-max-segments", str(search.statistics_segments), *spec.dyneval]
    argv = [*checkpoint_args(c, folder), *flags]
    key = {"argv": argv, "etas": search.etas, "lambdas": search.lambdas, "epsilons": spec.dyneval_epsilons,
           "segments": search.segments}
    tuned = reuse_or_call(f"{spec.name} dynamic evaluation tuning", key, folder / "dyneval.json",
                          lambda: dyneval_tuning.tune(*dyneval_tuning.load(argv), search.etas, search.lambdas,
                                                      spec.dyneval_epsilons, search_segments=search.segments,
                                                      score=False))
    best = ["--dyneval-lr", f"{tuned['eta']:g}", "--dyneval-lambda", f"{tuned['lambda']:g}",
            "--dyneval-epsilon", f"{tuned['epsilon']:g}"]
    return {"eta": tuned["eta"], "lambda": tuned["lambda"], "epsilon": tuned["epsilon"], "bptt": tuned["bptt"],
            **score(c, spec, folder, "dyneval", [*flags, *best])}


def run_model(c: Comparison, spec: ModelSpec) -> Dict:
    folder = c.out / spec.name
    updates = budget_updates(c, spec, folder)
    trained = train(c, spec, folder, updates)
    plain = score(c, spec, folder, "eval", spec.eval)
    return report.model_row(spec, folder, trained, plain, tuned_pointer(c, spec, folder),
                            tuned_dyneval(c, spec, folder))


def published_valid(c: Comparison) -> Dict[str, float]:
    """The published validation figure of each recipe model, where the models have the recipes' sizes
    (after training; the MoS recipes publish the fine-tuned one)."""
    if c.size != "recipe":
        return {}
    out = {}
    for model, recipe in (("awd_lstm", c.awd_recipe), ("qrnn", c.qrnn_recipe), ("awd_lstm_mos", c.mos_recipe),
                          ("mogrifier_lstm", c.mogrifier_recipe)):
        figures = RECIPES[recipe].published
        valid = (figures.get("train") or figures.get("finetune") or (None, None))[0]
        if model in c.models and valid is not None:
            out[model] = valid
    return out


def run(c: Comparison) -> Dict:
    c.out.mkdir(parents=True, exist_ok=True)
    specs = model_specs(c.data, c.size, c.awd_recipe, c.qrnn_recipe, c.mos_recipe, c.mogrifier_recipe)
    unknown = [m for m in c.models if m not in specs]
    if unknown:
        raise ValueError(f"--models: unknown {unknown}; choose from {', '.join(specs)}")
    rows = []
    for i, name in enumerate(c.models, 1):
        logger.info("[%d/%d] %s", i, len(c.models), name)
        rows.append(run_model(c, specs[name]))
    epochs = report.train_split_tokens(c.data)
    for row in rows:
        row["epochs"] = row["tokens"] / epochs if epochs else None
    problems = report.check_scored_tokens(rows)
    for p in problems:
        logger.error(p)
    notes = report.notes(rows, c.budget.describe(), c.dyneval.describe() if c.dyneval else None, problems)
    skipped = [m for m in c.models if c.dyneval and c.dyneval_models is not None and m not in c.dyneval_models
               and specs[m].dyneval is not None]
    if skipped:
        notes.append(f"Dynamic evaluation not run for {', '.join(skipped)} (--dyneval-models).")
    table = report.markdown_table(rows, c.char_level)
    (c.out / "table.md").write_text(table + "\n" + "\n".join(notes) + "\n")
    (c.out / "results.json").write_text(json.dumps({"budget": c.budget.describe(), "rows": rows,
                                                    "problems": problems, "notes": notes}, indent=1))
    if importlib.util.find_spec("matplotlib") is None:  # a GPU machine may lack it: the curves are in results.json
        logger.warning("matplotlib is not installed: no plots (report.plot_curves draws them from results.json)")
        plots = []
    else:
        plots = report.plot_curves(rows, c.out, c.char_level, published_valid(c))
    return {"rows": rows, "table": table, "notes": notes, "plots": plots, "problems": problems}
