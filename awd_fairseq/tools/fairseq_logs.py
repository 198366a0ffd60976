"""Read what fairseq's command-line tools print: `fairseq-train --log-format json` records and
fairseq-eval-lm's closing summary; the one place that parses fairseq output.

fairseq's `JsonProgressBar` logs one JSON object per line through a logger named after the
record's tag (fairseq's or hydra's line format)::

    2026-12-01 21:00:00 | INFO | train_inner | {"epoch": 1, "update": 0.25, "loss": "7.512", ...}
    2026-12-01 21:00:09 | INFO | valid | {"epoch": 1, "valid_loss": "6.9", "valid_ppl": "119.4", ...}
    [2026-12-01 21:00:09,123][valid][INFO] - {"epoch": 1, "valid_loss": "6.9", ...}

`train` (end of epoch) and validation records prefix every key with their tag; the readers strip
it and turn fairseq's formatted numbers back into int / float: `{"epoch": 1, "loss": 6.9, ...}`.
Losses are in bits (`ppl` is 2 ** loss). Every `source` is the text, an iterable of lines or a
path.
"""
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Union

Source = Union[str, "os.PathLike[str]", Iterable[str]]

# "<asctime> | <level> | <name> | <message>" (fairseq) or "[<asctime>][<name>][<level>] - <message>" (hydra)
_FAIRSEQ_LINE = re.compile(r"^(?P<time>[^|]*?)\s*\|\s*(?P<level>[A-Z]+)\s*\|\s*(?P<name>[^|]+?)\s*\|\s(?P<msg>\{.*\})\s*$")
_HYDRA_LINE = re.compile(r"^\[(?P<time>[^\]]*)\]\[(?P<name>[^\]]+)\]\[(?P<level>[A-Z]+)\]\s-\s(?P<msg>\{.*\})\s*$")
_EVALUATED = re.compile(r"Evaluated ([\d,]+) tokens in ([\d.]+)s \(([\d.]+) tokens/s\)")
_PARAMS = re.compile(r"num\. (?:shared )?model params: ([\d,]+)")
_LOSS_BASE2 = re.compile(r"Loss \(base 2\): ([-\d.naif]+), Perplexity: ([-\d.naif]+)")


@dataclass
class JsonRecord:
    """One JSON record: `tag` is the logger name fairseq gave it (`train_inner`, `train`, or the
    validation subset), `stats` its values with the tag prefix stripped and numbers parsed."""

    tag: Optional[str]
    stats: Dict[str, Any] = field(default_factory=dict)
    time: Optional[str] = None


@dataclass
class EvalLmSummary:
    """fairseq-eval-lm's closing lines. `loss_base2` is the mean negative log2-likelihood per
    scored token: bits per character on character-level data, log2(perplexity) on word-level."""

    loss_base2: float
    perplexity: float
    tokens: Optional[int] = None
    seconds: Optional[float] = None

    @property
    def bits_per_token(self) -> float:
        return self.loss_base2


def parse_value(value: Any) -> Any:
    """fairseq formats numbers as strings ("{:g}", "{:.3f}"); give them back as int / float."""
    if not isinstance(value, str):
        return value
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def _lines(source: Source) -> Iterator[str]:
    if isinstance(source, os.PathLike):
        with open(source, encoding="utf-8", errors="replace") as f:
            yield from f
    elif isinstance(source, str):
        yield from source.splitlines()
    else:
        for chunk in source:
            yield from chunk.splitlines()


def parse_line(line: str) -> Optional[JsonRecord]:
    """The JSON record on one line, or None if the line holds none. A bare JSON object (what
    `--log-file` writes: fairseq adds that handler without a formatter) gets tag None."""
    line = line.rstrip("\n")
    m = _FAIRSEQ_LINE.match(line) or _HYDRA_LINE.match(line)
    if m is not None:
        tag, time, msg = m.group("name"), m.group("time").strip() or None, m.group("msg")
    elif line.startswith("{"):
        tag, time, msg = None, None, line
    else:
        return None
    try:
        raw = json.loads(msg)
    except json.JSONDecodeError:
        return None
    if not isinstance(raw, dict):
        return None
    prefix = f"{tag}_" if tag else None
    stats = {}
    for key, value in raw.items():
        if prefix and key.startswith(prefix):
            key = key[len(prefix):]
        stats[key] = parse_value(value)
    return JsonRecord(tag=tag, stats=stats, time=time)


def read_records(source: Source, tag: Optional[str] = None) -> List[JsonRecord]:
    """Every JSON record in `source`, in order; only those logged under `tag` if given."""
    records = (parse_line(line) for line in _lines(source))
    return [r for r in records if r is not None and (tag is None or r.tag == tag)]


def train_inner(source: Source) -> List[Dict[str, Any]]:
    """The `--log-interval` records: loss, ppl, wps, ups, wpb, bsz, num_updates, lr, gnorm, wall, ..."""
    return [r.stats for r in read_records(source, "train_inner")]


def train_epochs(source: Source) -> List[Dict[str, Any]]:
    """The end-of-epoch training records (fairseq's `train_` prefix stripped)."""
    return [r.stats for r in read_records(source, "train")]


def valid(source: Source, subset: str = "valid") -> List[Dict[str, Any]]:
    """The validation records of one subset, in order: epoch, loss, ppl, num_updates, best_loss, ..."""
    return [r.stats for r in read_records(source, subset)]


def eval_lm_summary(source: Source) -> EvalLmSummary:
    """The last summary fairseq-eval-lm printed in `source`; ValueError if there is none."""
    tokens = seconds = summary = None
    for line in _lines(source):
        m = _EVALUATED.search(line)
        if m is not None:
            tokens, seconds = int(m.group(1).replace(",", "")), float(m.group(2))
            continue
        m = _LOSS_BASE2.search(line)
        if m is not None:
            summary = EvalLmSummary(float(m.group(1)), float(m.group(2)), tokens, seconds)
    if summary is None:
        raise ValueError("no 'Loss (base 2): ..., Perplexity: ...' line: is this fairseq-eval-lm's output?")
    return summary


def model_params(source: Source) -> Optional[int]:
    """The parameter count fairseq-train prints at start-up ("num. shared model params: 24,221,600
    (num. trained: ...)"; "num. model params" in older fairseq), or None."""
    for line in _lines(source):
        m = _PARAMS.search(line)
        if m is not None:
            return int(m.group(1).replace(",", ""))
    return None


def perplexity(loss_base2: float) -> float:
    """2 ** loss, as fairseq computes `ppl` (inf past float range)."""
    try:
        return 2.0 ** loss_base2
    except OverflowError:
        return math.inf
