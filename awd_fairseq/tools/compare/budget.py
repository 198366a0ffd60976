"""What each model of the comparison may train for, and what it did train for.

A budget is one of: updates (the same count for every model), training time (the same minutes of
the training loop for every model, validation and checkpoints excluded) or training tokens (the
same number of target tokens seen). Time and tokens are turned into updates per model from a
short calibration run of that model (`--max-update K`, no validation, nothing saved): its
fairseq-train `train_inner` records give seconds per update (`wpb / wps`: the loop's own rate,
start-up and the first interval left out) and tokens per update (`wpb`). The budget is then
exact in updates, and what a model actually got is read back from its training log.
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Optional

from .. import fairseq_logs

KINDS = ("updates", "minutes", "tokens")


@dataclass(frozen=True)
class Budget:
    kind: str  # one of KINDS
    amount: float

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"budget kind {self.kind!r}: choose from {', '.join(KINDS)}")
        if not self.amount > 0:
            raise ValueError(f"the budget must be positive, got {self.amount}")

    @property
    def calibrated(self) -> bool:
        return self.kind != "updates"

    def describe(self) -> str:
        if self.kind == "updates":
            return f"equal updates: {int(self.amount)} per model"
        if self.kind == "minutes":
            return (f"equal training time: {self.amount:g} minutes of fairseq's training loop per model "
                    "(validation, checkpoints and start-up excluded), converted to updates from a calibration run")
        return f"equal training tokens: {int(self.amount):,} target tokens per model, converted to updates"

    def updates(self, speed: Optional["Speed"] = None) -> int:
        if self.kind == "updates":
            return int(self.amount)
        if speed is None:
            raise ValueError(f"a {self.kind} budget needs the model's measured speed")
        per_update = speed.seconds_per_update / 60 if self.kind == "minutes" else speed.tokens_per_update
        return max(1, int(round(self.amount / per_update)))


@dataclass(frozen=True)
class Speed:
    seconds_per_update: float
    tokens_per_update: float


def measured_speed(train_log) -> Speed:
    """Seconds and tokens per update from a training log's train_inner records (first one left out)."""
    records = [r for r in fairseq_logs.train_inner(train_log)[1:] if r.get("wps") and r.get("wpb")]
    if not records:
        raise ValueError(f"{train_log}: no train_inner record with wps and wpb (log at a finer --log-interval)")
    seconds = sum(r["wpb"] / r["wps"] for r in records) / len(records)
    return Speed(seconds, sum(r["wpb"] for r in records) / len(records))


def calibration_flags(updates: int) -> List[str]:
    """fairseq-train flags of the calibration run (after the model's own)."""
    return ["--max-update", str(updates), "--disable-validation", "--no-save", "--log-format", "json",
            "--log-interval", str(max(1, updates // 6))]


def trained(train_log) -> Dict[str, float]:
    """What the run did: updates, target tokens and training-loop seconds, from the per-epoch
    `train` records (each epoch's wpb times its updates; fairseq's train_wall) and, where the run
    stopped inside its first log interval, the train_inner records."""
    epochs = fairseq_logs.train_epochs(train_log)
    updates, tokens, seconds = 0, 0.0, 0.0
    for record in epochs:
        done = record.get("num_updates", updates)
        tokens += record.get("wpb", 0.0) * (done - updates)
        seconds += record.get("train_wall", 0.0)
        updates = done
    return {"updates": updates, "tokens": tokens, "train_seconds": seconds}


def timeline(train_log) -> List[Dict[str, float]]:
    """Cumulative (updates, training seconds, tokens) at each train_inner record and at the run's
    end. An interval's seconds are its `train_wall` (fairseq's training loop alone, whole seconds)
    where the record has it, else wpb / wps (which counts a validation inside the interval); the
    end point is `trained`'s, so a validation after the last record is placed where it happened."""
    points, last, seconds, tokens = [{"updates": 0, "seconds": 0.0, "tokens": 0.0}], 0, 0.0, 0.0
    for r in fairseq_logs.train_inner(train_log):
        done = r.get("num_updates", last)
        if "train_wall" in r:
            seconds += r["train_wall"]
        elif r.get("wps"):
            seconds += r["wpb"] * (done - last) / r["wps"]
        tokens += r.get("wpb", 0.0) * (done - last)
        points.append({"updates": done, "seconds": seconds, "tokens": tokens})
        last = done
    end = trained(train_log)
    if end["updates"] > last:
        points.append({"updates": end["updates"], "seconds": max(seconds, end["train_seconds"]),
                       "tokens": max(tokens, end["tokens"])})
    return points


def at_update(points: List[Dict[str, float]], updates: float, key: str) -> float:
    """`key` (seconds or tokens) at `updates`, interpolated along the timeline."""
    for a, b in zip(points, points[1:]):
        if a["updates"] <= updates <= b["updates"]:
            span = b["updates"] - a["updates"]
            return a[key] + (b[key] - a[key]) * ((updates - a["updates"]) / span if span else 1.0)
    return points[-1][key] if points and updates >= points[-1]["updates"] else math.nan
