"""Scoring through fairseq's `SequenceScorer` at the cost of the target-only path.

fairseq-eval-lm and the hub interface's `score()` call `model(**sample["net_input"])` and read the
result only at `sample["target"]`. For our recurrent decoders (models/recurrent_decoder.py) the
targets are put into `net_input` as well, so the decoder computes `log p(target)` alone (the split
softmax's target-only path) instead of the (B, T, V) distribution that SequenceScorer would
normalise again and gather from. Models that do not take targets (fairseq's transformer_lm) are
left alone: their full softmax is their own business.
"""
from typing import Iterable, Iterator, Sequence


def scores_targets(models: Sequence) -> bool:
    """True when every model's decoder accepts `target` in net_input (our recurrent decoders)."""
    return all(getattr(getattr(m, "decoder", None), "scores_targets_only", False) for m in models)


def with_targets_in_input(sample: dict) -> dict:
    sample["net_input"]["target"] = sample["target"]
    return sample


class TargetsInInput:
    """Wraps fairseq-eval-lm's iterator of windows: each sample also carries its targets in net_input."""

    def __init__(self, samples: Iterable[dict]):
        self.samples = samples
        self.n = getattr(samples, "n", 0)  # fairseq's progress bar reads it

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[dict]:
        for sample in self.samples:
            yield with_targets_in_input(sample)
