"""The comparison's results: one row per model read from fairseq's own output (the training log's
JSON records and start-up parameter count, fairseq-eval-lm's summaries, the pointer tuning's
JSON), the Markdown table, and the validation curves as PNG plots.

Word-level data reads as perplexity (2 ** loss); character-level data (`char_level`) as bits per
character, which is fairseq's base-2 loss itself.
"""
import logging
import math
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional

from .. import fairseq_logs


def _timestamp(text: Optional[str]) -> Optional[float]:
    if not text:
        return None
    return datetime.strptime(text[:19], "%Y-%m-%d %H:%M:%S").timestamp()  # fairseq logs local time


def curve(train_log: Path, started: float) -> List[Dict[str, float]]:
    """Validation points: seconds since the run was launched, updates, loss (bits per token)."""
    points = []
    for record in fairseq_logs.read_records(train_log, "valid"):
        when = _timestamp(record.time)
        points.append({"seconds": (when - started) if when is not None else math.nan,
                       "updates": record.stats.get("num_updates", math.nan), "loss": record.stats["loss"]})
    return points


def tokens_per_second(train_log: Path) -> Optional[float]:
    """Mean of the train_inner `wps` (the first interval, with start-up, left out when there are more)."""
    wps = [r["wps"] for r in fairseq_logs.train_inner(train_log) if "wps" in r]
    wps = wps[1:] or wps
    if not wps:
        epochs = [r["wps"] for r in fairseq_logs.train_epochs(train_log) if "wps" in r]
        return epochs[-1] if epochs else None
    return sum(wps) / len(wps)


def model_row(name: str, folder: Path, train_step: Dict, notes: str = "", pointer: Optional[Dict] = None) -> Dict:
    """One model's figures: training (its log and `train_step`), eval-lm on valid and test (their
    logs) and the tuned pointer (`pointer_tuning.tune`'s result, None when not run)."""
    train_log = folder / "train.log"
    row = {"model": name, "notes": notes, "params": fairseq_logs.model_params(train_log),
           "tokens_per_s": tokens_per_second(train_log), "peak_rss_mib": train_step["peak_rss_mib"],
           "train_seconds": train_step["seconds"], "curve": curve(train_log, train_step["started"])}
    row["updates"] = row["curve"][-1]["updates"] if row["curve"] else None
    for split in ("valid", "test"):
        summary = fairseq_logs.eval_lm_summary(folder / f"eval_{split}.log")
        row[split] = {"loss": summary.loss_base2, "tokens": summary.tokens}
    row["pointer"] = pointer
    return row


def _score(loss: Optional[float], char_level: bool) -> str:
    if loss is None:
        return "n/a"
    return f"{loss:.3f}" if char_level else f"{fairseq_logs.perplexity(loss):.2f}"


def markdown_table(rows: List[Dict], char_level: bool = False) -> str:
    unit = "bpc" if char_level else "ppl"
    head = ["model", "params", "train tokens/s", "peak RSS (MiB)", "train wall (min)", "updates",
            f"valid {unit}", f"test {unit}", f"valid {unit} + pointer", f"test {unit} + pointer", "pointer theta / lambda"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        p = r.get("pointer")
        cells = [
            f"`{r['model']}`" + (f" ({r['notes']})" if r.get("notes") else ""),
            f"{r['params'] / 1e6:.2f}M" if r.get("params") else "n/a",
            f"{r['tokens_per_s']:.0f}" if r.get("tokens_per_s") else "n/a",
            f"{r['peak_rss_mib']:.0f}", f"{r['train_seconds'] / 60:.1f}", str(r.get("updates")),
            _score(r["valid"]["loss"], char_level), _score(r["test"]["loss"], char_level),
            _score(p and p["valid"]["loss"], char_level), _score(p and p["test"]["loss"], char_level),
            f"{p['theta']:g} / {p['lambda']:g}" if p else "n/a",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def scored_tokens(rows: List[Dict]) -> Dict[str, Dict[str, int]]:
    """{split: {model: tokens scored}} from fairseq-eval-lm (and the pointer runs)."""
    out = {}
    for split in ("valid", "test"):
        out[split] = {r["model"]: r[split]["tokens"] for r in rows}
        out[split].update({r["model"] + " + pointer": r["pointer"][split]["tokens"] for r in rows if r.get("pointer")})
    return out


def plot_curves(rows: List[Dict], folder: Path, char_level: bool = False) -> List[Path]:
    """valid_vs_wall.png and valid_vs_updates.png: one curve per model."""
    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its font search logs at DEBUG
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = "bits per character" if char_level else "perplexity"
    paths = []
    for x_key, x_label, file_name in (("seconds", "wall-clock time since launch (min)", "valid_vs_wall.png"),
                                      ("updates", "updates", "valid_vs_updates.png")):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for r in rows:
            xs = [p[x_key] / (60 if x_key == "seconds" else 1) for p in r["curve"]]
            ys = [p["loss"] if char_level else fairseq_logs.perplexity(p["loss"]) for p in r["curve"]]
            ax.plot(xs, ys, marker="o", markersize=3, label=r["model"])
        ax.set_xlabel(x_label)
        ax.set_ylabel(f"validation {unit}")
        if not char_level:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = folder / file_name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
