"""Continuous cache pointer over a stream of hidden states.

Grave, Joulin and Usunier, "Improving Neural Language Models with a Continuous Cache"
(arXiv:1612.04426), as used by salesforce/awd-lstm-lm ``pointer.py`` on a batch-size-1 stream.

At absolute stream position ``t`` (0-based), ``h_t`` is the last layer's output used to predict
the next token ``y_t`` and

    p(w) = lambdah * p_cache(w) + (1 - lambdah) * p_model(w)
    p_cache(w) = sum_{i in [t-window, t-1], y_i == w} softmax_i(theta * h_t . h_i)

The cache never holds position ``t`` itself and always holds exactly ``window`` positions when
it is used.

Warm-up, exactly as the original: ``pointer.py`` keeps ``L = min(n, window)`` history entries
before a chunk that starts at absolute position ``n`` and uses the cache for chunk offset ``idx``
iff ``L + idx > window`` (strictly). In absolute positions ``t = n + idx`` that is

    t > window                          while n < window (the first window of the stream)
    t > n  (every offset but idx == 0)  once n >= window

so the original also skips the cache at the first token of every chunk after warm-up, which makes
its numbers depend on ``--bptt``. By default this class uses the chunking-independent rule
``t > window`` (the cache starts once more than ``window`` positions have been seen);
``skip_chunk_start=True`` reproduces the original's rule token for token.

Unlike the original (a per-token loop over a ``(window, V)`` one-hot history), a whole chunk of
``T`` positions is scored at once: one ``(B, window + B - 1)`` matrix product per block of ``B``
rows, each row's window read out of it as a diagonal band (a strided ``(B, window)`` view), and the
cache mass of the target a masked log-sum-exp over that band: ``O(window)`` per token, never a
``(window, V)`` one-hot. Memory is bounded by the window and the block size, not the chunk length.
"""

import math
from typing import Iterator, Optional, Tuple

import torch


def mix_with(lambdah: float, log_cache: torch.Tensor, log_model: torch.Tensor) -> torch.Tensor:
    """``log(lambdah * exp(log_cache) + (1 - lambdah) * exp(log_model))``, elementwise.

    Works in log space with ``log(0) = -inf`` weights, so ``lambdah`` 0 returns ``log_model`` and
    1 returns ``log_cache`` exactly.
    """
    log_lambda = math.log(lambdah) if lambdah > 0 else float("-inf")
    log_one_minus_lambda = math.log1p(-lambdah) if lambdah < 1 else float("-inf")
    dtype = torch.promote_types(log_cache.dtype, log_model.dtype)
    return torch.logaddexp(log_cache.to(dtype) + log_lambda, log_model.to(dtype) + log_one_minus_lambda)


class CachePointer:
    """Stateful cache pointer for one evaluation stream (batch size 1).

    State, created empty and cleared by :meth:`reset` (call it at the start of each stream):
      - ``history_hidden``: ``(L, H)`` detached hidden states of the last ``L <= window`` positions
      - ``history_next_words``: ``(L,)`` their next-word ids ``y_i``
      - ``num_seen``: absolute count of positions scored so far
    Both scoring methods update the state, so call exactly one of them per chunk.

    Args:
        window: number of previous positions the cache attends over (``--window`` in pointer.py).
        theta: inverse temperature of the cache softmax (``--theta``).
        lambdah: weight of the cache distribution in the mixture (``--lambdasm``).
        skip_chunk_start: reproduce pointer.py's rule of not using the cache at the first
            token of a chunk once ``window`` positions have been seen (see the module docstring).
        block_size: rows scored per matrix product; bounds memory to
            ``O(block_size * (window + block_size))`` whatever the chunk length.
    """

    def __init__(
        self,
        window: int,
        theta: float,
        lambdah: float,
        skip_chunk_start: bool = False,
        block_size: int = 1024,
    ):
        if window < 1:
            raise ValueError(f"--pointer-window must be >= 1, got {window}")
        if not 0.0 <= lambdah <= 1.0:
            raise ValueError(f"--pointer-lambda must lie in [0, 1], got {lambdah}")
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.window = window
        self.theta = theta
        self.lambdah = lambdah
        self.skip_chunk_start = skip_chunk_start
        self.block_size = block_size
        self.reset()

    def reset(self) -> None:
        """Forget the history; the next chunk starts a new stream at position 0."""
        self.history_hidden: Optional[torch.Tensor] = None  # (L, H)
        self.history_next_words: Optional[torch.Tensor] = None  # (L,)
        self.num_seen = 0

    def score(
        self, hidden: torch.Tensor, targets: torch.Tensor, target_log_probs: torch.Tensor
    ) -> torch.Tensor:
        """Log-probability of each target under the mixture, then append the chunk to the cache.

        Args:
            hidden: ``(T, H)`` last-layer outputs ``h_t`` (before the decoder).
            targets: ``(T,)`` next-word ids ``y_t``.
            target_log_probs: ``(T,)`` the model's ``log p_model(y_t)``.
        Returns:
            ``(T,)`` ``log(lambdah * p_cache(y_t) + (1 - lambdah) * p_model(y_t))``; exactly
            ``target_log_probs`` at positions where the cache is not used.
        """
        log_cache, used = self.target_cache_log_probs(hidden, targets)
        return torch.where(used, self.mix(log_cache, target_log_probs), target_log_probs)

    def target_cache_log_probs(
        self, hidden: torch.Tensor, targets: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The cache alone, then append the chunk to the cache: for a search over ``lambdah``.

        Returns:
            ``(T,)`` ``log p_cache(y_t)`` (``-inf`` where no cached position has next word
            ``y_t``; meaningless where unused) and ``(T,)`` ``used``, whether position ``t`` uses
            the cache. ``self.mix(log_cache, target_log_probs)`` at the used positions is
            :meth:`score`; :func:`mix_with` gives the mixture for any other ``lambdah``.
        """
        log_cache = hidden.new_empty(targets.shape, dtype=torch.promote_types(hidden.dtype, torch.float32))
        used_all = torch.zeros(targets.shape, dtype=torch.bool, device=targets.device)
        for rows, logits, words, used in self._bands(hidden, targets):
            hit = words == targets[rows].unsqueeze(1)  # (B, W)
            # one exp for numerator and denominator; a hit more than ~87 (float32) below the
            # row's maximum logit underflows to p_cache = 0 instead of a smaller positive number
            weights = (logits - logits.amax(dim=1, keepdim=True)).exp_()  # (B, W)
            log_cache[rows] = weights.where(hit, 0.0).sum(1).log_() - weights.sum(1).log_()  # (B,) log p_cache(y_t)
            used_all[rows] = used
        self._append(hidden, targets)
        return log_cache, used_all

    def full_distribution(
        self, hidden: torch.Tensor, targets: torch.Tensor, log_probs: torch.Tensor
    ) -> torch.Tensor:
        """Log of the whole mixture distribution, then append the chunk to the cache.

        Args:
            hidden: ``(T, H)`` last-layer outputs.
            targets: ``(T,)`` next-word ids; needed because positions earlier in the same chunk
                are in the cache of later ones.
            log_probs: ``(T, V)`` the model's log-probabilities.
        Returns:
            ``(T, V)`` mixture log-probabilities; rows without cache equal ``log_probs``.
        """
        out = log_probs.clone()  # (T, V)
        for rows, logits, words, used in self._bands(hidden, targets):
            attn = torch.softmax(logits, dim=1)  # (B, W)
            cache = attn.new_zeros(attn.size(0), log_probs.size(1))  # (B, V)
            cache.scatter_add_(1, words, attn)
            mixed = self.mix(cache.log(), log_probs[rows])  # (B, V)
            out[rows] = torch.where(used.unsqueeze(1), mixed, log_probs[rows])
        self._append(hidden, targets)
        return out

    def mix(self, log_cache: torch.Tensor, log_model: torch.Tensor) -> torch.Tensor:
        """``log(lambdah * exp(log_cache) + (1 - lambdah) * exp(log_model))``."""
        return mix_with(self.lambdah, log_cache, log_model)

    def _bands(
        self, hidden: torch.Tensor, targets: torch.Tensor
    ) -> Iterator[Tuple[slice, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield ``(rows, logits (B, W), words (B, W), used (B,))`` per block of chunk rows.

        ``logits[r, j] = theta * h_t . h_{t - W + j}`` and ``words[r, j] = y_{t - W + j}`` for the
        chunk row ``t`` of block row ``r``: each row's window band, nothing else.
        The history is left-padded to exactly ``W`` entries (zero states, word 0), so chunk row
        ``idx`` sits at key ``W + idx`` and its band is keys ``[idx, idx + W)``. Padding only ever
        falls in the band of rows with ``used == False``, whose values callers discard.
        """
        if hidden.dim() != 2 or targets.shape != hidden.shape[:1]:
            raise ValueError(f"expected hidden (T, H) and targets (T,), got "
                             f"{tuple(hidden.shape)} and {tuple(targets.shape)}")
        hidden = hidden.detach().to(torch.promote_types(hidden.dtype, torch.float32))
        targets = targets.detach().long()
        T, W = hidden.size(0), self.window
        L = 0 if self.history_hidden is None else self.history_hidden.size(0)
        parts_h, parts_y = [hidden.new_zeros(W - L, hidden.size(1))], [targets.new_zeros(W - L)]
        if L > 0:
            parts_h.insert(1, self.history_hidden.to(hidden))
            parts_y.insert(1, self.history_next_words.to(targets.device))
        keys = torch.cat(parts_h + [hidden])  # (W + T, H)
        key_words = torch.cat(parts_y + [targets])  # (W + T,)
        offset = torch.arange(T, device=hidden.device)  # (T,) chunk offsets idx
        if self.skip_chunk_start:
            used_all = L + offset > W  # pointer.py: start_idx + idx > window
        else:
            used_all = self.num_seen + offset > W  # absolute position t > window
        for a in range(0, T, self.block_size):
            b = min(a + self.block_size, T)
            queries = self.theta * hidden[a:b]  # (B, H)
            full = queries @ keys[a:b - 1 + W].t()  # (B, B - 1 + W), contiguous
            # row r of the block needs columns [r, r + W): a diagonal band, read as a strided view
            logits = full.as_strided((b - a, W), (full.size(1) + 1, 1))  # (B, W)
            words = key_words[a:b - 1 + W].unfold(0, W, 1)  # (B, W)
            yield slice(a, b), logits, words, used_all[a:b]

    def _append(self, hidden: torch.Tensor, targets: torch.Tensor) -> None:
        """Append the chunk's states and next words, keep the last ``window``."""
        hidden = hidden.detach().to(torch.promote_types(hidden.dtype, torch.float32))
        targets = targets.detach().long()
        self.num_seen += targets.size(0)
        if self.history_hidden is not None:
            hidden = torch.cat([self.history_hidden.to(hidden), hidden])
            targets = torch.cat([self.history_next_words.to(targets.device), targets])
        # clone so the history never keeps a large chunk tensor alive through a view
        self.history_hidden = hidden[-self.window:].clone()  # (L, H)
        self.history_next_words = targets[-self.window:].clone()  # (L,)
