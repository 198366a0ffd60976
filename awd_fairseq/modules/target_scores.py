"""The target-only scores handed to fairseq's `SequenceScorer` (fairseq-eval-lm, hub `score()`).

`SequenceScorer` asks the model for `get_normalized_probs(...)`, a (B, T, V) tensor, and then
reads it at the targets only (`probs.gather(2, target[..., None])`). A model that already knows
the targets computes `log p(target)` (B, T, 1) alone, which for a split softmax touches only the
blocks the targets fall in, and returns it broadcast over the vocabulary as a stride-0 view: no
(B, T, V) allocation, and every gather at a target reads the right value. It is not a
distribution anywhere else, so it is only given where the caller handed the targets in
(`net_input["target"]`, see tasks/scoring.py); sampling and every caller without targets get the
full distribution.
"""
from torch import Tensor


def target_only_probs(scores: Tensor, vocab_size: int) -> Tensor:
    """`scores` (..., 1) at the targets -> a (..., vocab_size) stride-0 view of them."""
    if scores.size(-1) != 1:
        raise ValueError(f"expected target scores of shape (..., 1), got {tuple(scores.shape)}")
    return scores.expand(*scores.shape[:-1], vocab_size)
