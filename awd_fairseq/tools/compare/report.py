"""The comparison's results: one row per model read from fairseq's own output (the training log's
JSON records and start-up parameter count, fairseq-eval-lm's summaries), the Markdown table with
the notes that say how it was made, and the validation curves as PNG plots.

Word-level data reads as perplexity (2 ** loss); character-level data (`char_level`) as bits per
character, which is fairseq's base-2 loss itself.
"""
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional

from .. import fairseq_logs
from .budget import at_update, timeline, trained

EVALUATIONS = (("plain", "eval"), ("pointer", "pointer"), ("dynamic evaluation", "dyneval"))


def eval_summary(log: Path) -> Dict:
    s = fairseq_logs.eval_lm_summary(log)
    return {"loss": s.loss_base2, "tokens": s.tokens, "seconds": s.seconds}


def curve(train_log: Path) -> List[Dict[str, float]]:
    """Validation points: updates, training seconds and training tokens at that update, loss (bits)."""
    points = timeline(train_log)
    out = []
    for record in fairseq_logs.valid(train_log):
        updates = record.get("num_updates")
        out.append({"updates": updates, "seconds": at_update(points, updates, "seconds"),
                    "tokens": at_update(points, updates, "tokens"), "loss": record["loss"]})
    return out


def model_row(spec, folder: Path, train_step: Dict, plain: Dict, pointer: Optional[Dict],
              dyneval: Optional[Dict]) -> Dict:
    """One model's figures; `plain`, `pointer`, `dyneval`: {split: eval_summary} (+ their settings)."""
    train_log = folder / "train.log"
    done = trained(train_log)
    row = {"model": spec.name, "notes": spec.notes, "caveat": spec.caveat,
           "params": fairseq_logs.model_params(train_log), "peak_rss_mib": train_step["peak_rss_mib"],
           **done, "other_seconds": max(0.0, train_step["seconds"] - done["train_seconds"]),
           "tokens_per_s": done["tokens"] / done["train_seconds"] if done["train_seconds"] else None,
           "curve": curve(train_log), "eval": plain, "pointer": pointer, "dyneval": dyneval}
    return row


def train_split_tokens(data: str) -> Optional[int]:
    """Tokens of the training split (every line with its </s>), for the epochs trained."""
    from fairseq.data import Dictionary, data_utils

    path = os.path.join(data.split(os.pathsep)[0], "train")
    lines = data_utils.load_indexed_dataset(path, Dictionary.load(os.path.join(os.path.dirname(path), "dict.txt")))
    return int(lines.sizes.sum()) if lines is not None else None


def _score(result: Optional[Dict], split: str, char_level: bool) -> str:
    if not result:
        return "n/a"
    loss = result[split]["loss"]
    return f"{loss:.3f}" if char_level else f"{fairseq_logs.perplexity(loss):.2f}"


def _seconds(result: Optional[Dict]) -> str:
    return f"{result['test']['seconds']:.0f}" if result and result["test"].get("seconds") is not None else "n/a"


def markdown_table(rows: List[Dict], char_level: bool = False) -> str:
    unit = "bpc" if char_level else "ppl"
    head = ["model", "params", "updates", "train tokens", "epochs", "train (min)", "validation etc. (min)",
            "train tokens/s", f"valid {unit}", f"test {unit}", "valid + pointer", "test + pointer",
            "valid + dyn. eval", "test + dyn. eval", "test eval s: plain / pointer / dyn. eval"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            f"`{r['model']}`" + (f" ({r['notes']})" if r.get("notes") else "") + (" *" if r.get("caveat") else ""),
            f"{r['params'] / 1e6:.2f}M" if r.get("params") else "n/a",
            str(r["updates"]), f"{r['tokens']:,.0f}", f"{r['epochs']:.2f}" if r.get("epochs") is not None else "n/a",
            f"{r['train_seconds'] / 60:.1f}", f"{r['other_seconds'] / 60:.1f}",
            f"{r['tokens_per_s']:.0f}" if r.get("tokens_per_s") else "n/a",
            *(_score(r.get(key), split, char_level) for key in ("eval", "pointer", "dyneval") for split in ("valid", "test")),
            " / ".join(_seconds(r.get(key)) for key in ("eval", "pointer", "dyneval")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def notes(rows: List[Dict], budget: str, dyneval_search: Optional[str], problems: List[str]) -> List[str]:
    """What the table's figures are and how each was tuned, one line each."""
    counts = scored_tokens(rows)
    out = [f"Budget: {budget}. Train (min): fairseq's train_wall, the training loop alone; validation etc.: the "
           "rest of the training command's wall-clock time (validation, checkpoints, start-up)."]
    for r in rows:
        settings = []
        if r.get("pointer"):
            settings.append(f"pointer theta {r['pointer']['theta']:g}, lambda {r['pointer']['lambda']:g}")
        if r.get("dyneval"):
            d = r["dyneval"]
            settings.append(f"dynamic evaluation segments of {d['bptt']}, eta {d['eta']:g}, lambda {d['lambda']:g}, "
                            f"epsilon {d['epsilon']:g}")
        if settings:
            out.append(f"`{r['model']}`: " + "; ".join(settings) + ".")
        if r.get("caveat"):
            out.append(f"* `{r['model']}`: {r['caveat']}.")
    pointer = ("The pointer's theta and lambda are tuned on all of valid (the grids of "
               "awd_fairseq.tools.pointer_tuning)" if any(r.get("pointer") for r in rows)
               else "The pointer columns were not run")
    out.append(pointer + "; dynamic evaluation's " + (dyneval_search if dyneval_search else "columns were not run") + ".")
    out.append(f"Scored tokens: valid {sorted(set(counts['valid'].values()))}, test {sorted(set(counts['test'].values()))}"
               + (" (NOT identical across runs)" if problems else " (identical for every run)"))
    return out


def scored_tokens(rows: List[Dict]) -> Dict[str, Dict[str, int]]:
    """{split: {model + evaluation: tokens scored}} from every fairseq-eval-lm run."""
    out = {"valid": {}, "test": {}}
    for r in rows:
        for name, key in EVALUATIONS:
            for split in out:
                if r.get(key):
                    out[split][f"{r['model']} {name}"] = r[key][split]["tokens"]
    return out


def check_scored_tokens(rows: List[Dict]) -> List[str]:
    """Every model and evaluation must score the same tokens of each split: the problems found."""
    return [f"{split}: the runs scored different numbers of tokens: {counts}"
            for split, counts in scored_tokens(rows).items() if len(set(counts.values())) > 1]


def plot_curves(rows: List[Dict], folder: Path, char_level: bool = False,
                published: Optional[Dict[str, float]] = None) -> List[Path]:
    """valid_vs_time.png and valid_vs_tokens.png: one line per model, log scale; `published`
    ({model: validation perplexity or bpc}) drawn as a dashed line in the model's colour."""
    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its font search logs at DEBUG
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = "bits per character" if char_level else "perplexity"
    paths = []
    for x_key, scale, x_label, file_name in (
            ("seconds", 60, "training time (min, validation excluded)", "valid_vs_time.png"),
            ("tokens", 1e6, "training tokens (millions)", "valid_vs_tokens.png")):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for r in rows:
            xs = [p[x_key] / scale for p in r["curve"]]
            ys = [p["loss"] if char_level else fairseq_logs.perplexity(p["loss"]) for p in r["curve"]]
            line, = ax.plot(xs, ys, marker="o", markersize=3, label=r["model"])
            if published and r["model"] in published:
                ax.axhline(published[r["model"]], color=line.get_color(), linestyle="--", linewidth=1,
                           label=f"{r['model']}, published ({published[r['model']]:g})")
        ax.set_xlabel(x_label)
        ax.set_ylabel(f"validation {unit}")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = folder / file_name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
