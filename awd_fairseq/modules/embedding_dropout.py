"""Embedding dropout: drop whole word types from the embedding matrix.

Section 4.3 of Merity et al., "Regularizing and Optimizing LSTM Language Models"
(arXiv 1708.02182), after Gal & Ghahramani (2016, arXiv 1512.05287). Follows
salesforce/awd-lstm-lm ``embed_regularize.py`` (``embedded_dropout``) with two deliberate
differences:

* no ``padding_idx`` handling at all. The original passes ``padding_idx=-1`` to
  ``F.embedding`` when the embedding has none; modern PyTorch reads -1 as the last row and
  zeroes that row's gradient, so the last word of the vocabulary was never trained.
* the mask is applied after the lookup instead of to the whole (V, E) matrix (see below).
"""

import torch
import torch.nn.functional as F
from torch import nn


def embedding_dropout(
    weight: torch.Tensor, tokens: torch.Tensor, p: float, training: bool
) -> torch.Tensor:
    """Look up ``tokens`` in ``weight`` (V, E), dropping each word type with probability ``p``.

    In training, one Bernoulli(1 - p) draw per vocabulary row is made per call and kept rows
    are scaled by 1 / (1 - p): every occurrence of a word in ``tokens`` shares its draw, and a
    dropped word embeds to the zero vector. Returns a tensor of shape ``tokens.shape + (E,)``.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"embedding dropout probability must be in [0, 1), got {p}")
    embedded = F.embedding(tokens, weight)  # (*, E)
    if not training or p == 0.0:
        return embedded
    keep = 1.0 - p
    mask = weight.new_empty(weight.size(0)).bernoulli_(keep).div_(keep)  # (V,)
    # The original multiplies the whole (V, E) matrix by the mask and then looks tokens up.
    # Row v of that product is weight[v] * mask[v], so scaling the looked-up rows by
    # mask[tokens] gives the same values and the same gradient for every row of ``weight``
    # (rows that are not looked up get none either way) without a (V, E) temporary.
    return embedded * mask[tokens].unsqueeze(-1)  # (*, E) * (*, 1)


class EmbeddingDropout(nn.Module):
    """An ``nn.Embedding`` whose lookup applies :func:`embedding_dropout` in training.

    The embedding is held as the submodule ``self.embedding`` so that its weight can be tied to
    an output projection (``decoder.weight = embedding_dropout.embedding.weight``).
    ``padding_idx``, ``max_norm``, ``scale_grad_by_freq`` and ``sparse`` are refused rather than
    silently ignored: this lookup masks no gradient row and renormalises nothing.
    """

    def __init__(self, embedding: nn.Embedding, p: float):
        super().__init__()
        if (
            embedding.padding_idx is not None
            or embedding.max_norm is not None
            or embedding.scale_grad_by_freq
            or embedding.sparse
        ):
            raise ValueError(
                "EmbeddingDropout needs a plain nn.Embedding (no padding_idx, max_norm, "
                "scale_grad_by_freq or sparse)"
            )
        if not 0.0 <= p < 1.0:
            raise ValueError(f"embedding dropout probability must be in [0, 1), got {p}")
        self.embedding = embedding
        self.p = p

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # tokens: (T, B) int64 -> (T, B, E); any shape works
        return embedding_dropout(self.embedding.weight, tokens, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
