"""Split (two-level) softmax with the output embedding tied to the input embedding.

The approximate softmax of salesforce/awd-lstm-lm ``splitcross.py`` (``SplitCrossEntropyLoss``),
used there for WikiText-103 and One Billion Word (Merity et al., "An Analysis of Neural Language
Modeling at Multiple Scales", arXiv 1803.08240; the AWD-LSTM is arXiv 1708.02182). The
vocabulary, sorted by frequency, is cut into a head [0, c1) and tail clusters [c1, c2), ...,
[cn, V). The head softmax runs over the head words plus one learnt "tombstone" per tail cluster,
and for a word w of tail cluster k

    log p(w) = log p_head(tombstone k) + log softmax_{cluster k}(w).

Tombstone k is row k - 1 of ``tail_vectors`` / ``tail_bias``. The original indexes its
tombstones from the end (cluster k uses row n - k of n); flip both along dim 0 to port them.
"""

import operator
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def default_cutoffs(vocab_size: int) -> List[int]:
    """The original's rule (awd-lstm-lm ``main.py``) for choosing cut-offs from the vocabulary size.

    One Billion Word sized (more than 500000 types): [4200, 35000, 180000]; WikiText-103 sized
    (more than 75000): [2800, 20000, 76000]; anything smaller: [] (plain softmax). The original
    passes these as ``splits`` and appends an open end, so the last cluster is [76000, V).
    """
    if vocab_size > 500000:
        return [4200, 35000, 180000]
    if vocab_size > 75000:
        return [2800, 20000, 76000]
    return []


def check_cutoffs(cutoffs: Sequence[int], vocab_size: int) -> List[int]:
    """Return ``cutoffs`` as a list of ints, or raise if they are not strictly increasing in (0, V)."""
    try:
        cutoffs = [operator.index(c) for c in cutoffs]
    except TypeError:
        cutoffs, valid = list(cutoffs), False
    else:
        bounds = [0] + cutoffs + [vocab_size]
        valid = all(a < b for a, b in zip(bounds, bounds[1:]))
    if not valid:
        raise ValueError(
            f"--split-softmax-cutoffs must be strictly increasing integers between 0 and the "
            f"vocabulary size {vocab_size} (both excluded), got {cutoffs}"
        )
    return cutoffs


class SplitSoftmax(nn.Module):
    """Two-level softmax over a vocabulary of ``vocab_size`` words cut at ``cutoffs``.

    Owns only the tombstones (``tail_vectors`` (n, H), ``tail_bias`` (n,), zero-initialised as in
    the original); the output embedding ``weight`` (V, H) and ``bias`` (V,) belong to the model
    and are passed to every call. With no cutoffs it is a plain full softmax and has no parameters.
    """

    def __init__(self, hidden_size: int, vocab_size: int, cutoffs: Sequence[int] = ()):
        super().__init__()
        self.hidden_size = hidden_size
        self.vocab_size = vocab_size
        self.cutoffs = check_cutoffs(cutoffs, vocab_size)
        self.boundaries = [0] + self.cutoffs + [vocab_size]  # cluster k = [b[k], b[k+1])
        n_tail = len(self.cutoffs)
        if n_tail:
            self.tail_vectors = nn.Parameter(torch.zeros(n_tail, hidden_size))
            self.tail_bias = nn.Parameter(torch.zeros(n_tail))

    def _head_log_probs(self, hidden, weight, bias):
        # hidden (N, H) -> (N, c1 + n): head words, then one tombstone per tail cluster
        end = self.boundaries[1]
        head_weight, head_bias = weight[:end], None if bias is None else bias[:end]
        if self.cutoffs:
            head_weight = torch.cat([head_weight, self.tail_vectors])
            head_bias = None if head_bias is None else torch.cat([head_bias, self.tail_bias])
        return F.log_softmax(F.linear(hidden, head_weight, head_bias), dim=-1)

    def _cluster_log_probs(self, hidden, weight, bias, k):
        # hidden (M, H) -> (M, b[k+1] - b[k]): softmax within tail cluster k >= 1
        start, end = self.boundaries[k], self.boundaries[k + 1]
        logits = F.linear(hidden, weight[start:end], None if bias is None else bias[start:end])
        return F.log_softmax(logits, dim=-1)

    def log_probs(
        self, hidden: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """Full log distribution: hidden (..., H) -> (..., V)."""
        lead = hidden.shape[:-1]
        hidden = hidden.reshape(-1, self.hidden_size)  # (N, H)
        head = self._head_log_probs(hidden, weight, bias)  # (N, c1 + n)
        c1 = self.boundaries[1]
        parts = [head[:, :c1]]
        for k in range(1, len(self.boundaries) - 1):
            tombstone = head[:, c1 + k - 1 : c1 + k]  # (N, 1)
            parts.append(tombstone + self._cluster_log_probs(hidden, weight, bias, k))
        return torch.cat(parts, dim=-1).view(*lead, self.vocab_size)  # (..., V)

    def target_log_probs(
        self,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: Optional[torch.Tensor],
        target: torch.Tensor,
    ) -> torch.Tensor:
        """log p(target): hidden (..., H), target (...) int64 in [0, V) -> (...).

        The head softmax is computed for every row, and each tail cluster's softmax only for the
        rows whose target lies in that cluster, as the original loss does.
        """
        lead = target.shape
        hidden = hidden.reshape(-1, self.hidden_size)  # (N, H)
        target = target.reshape(-1)  # (N,)
        head = self._head_log_probs(hidden, weight, bias)  # (N, c1 + n)
        c1 = self.boundaries[1]
        # Rows with a tail target read a dummy head entry here; it is overwritten below.
        out = head.gather(1, target.clamp(max=c1 - 1).unsqueeze(1)).squeeze(1)  # (N,)
        for k in range(1, len(self.boundaries) - 1):
            start, end = self.boundaries[k], self.boundaries[k + 1]
            rows = ((target >= start) & (target < end)).nonzero().squeeze(1)  # (M,)
            if rows.numel() == 0:
                continue
            within = self._cluster_log_probs(hidden[rows], weight, bias, k)  # (M, end - start)
            within = within.gather(1, (target[rows] - start).unsqueeze(1)).squeeze(1)  # (M,)
            out = out.index_copy(0, rows, head[rows, c1 + k - 1] + within)
        return out.view(lead)
