"""Mixture of softmaxes (MoS) over a tied output embedding.

The output layer of AWD-LSTM-MoS: Yang, Dai, Salakhutdinov and Cohen, "Breaking the Softmax
Bottleneck: A High-Rank RNN Language Model" (arXiv 1711.03953, ICLR 2018), after zihangdai/mos
``model.py`` (``RNNModel.forward``). With ``h`` the last recurrent layer's output after its locked
dropout, ``K`` experts and the output embedding ``W`` (V, E) with bias ``b`` (V,):

    latent  = tanh(W_l h + b_l)                       # (K * E,), then locked dropout (dropoutl)
    pi      = softmax(W_p h)                          # (K,), no bias
    p(w)    = sum_k pi_k softmax(W latent_k + b)_w    # latent_k: the k-th slice of size E

The reference forms the K probability vectors and returns ``log(p + 1e-8)``; here the mixture is
taken in log space, ``log p(w) = logsumexp_k(log pi_k + log_softmax(W latent_k + b)_w)``, which
is exact where the reference underflows. The K x V logits are formed for at most
``max_chunk_elements // (K * V)`` tokens at a time; with gradients enabled each chunk is
recomputed in the backward pass (activation checkpointing), so training memory for the output
layer is bounded per chunk rather than per batch (the reference's ``--small_batch_size``
bounded it by running the batch in pieces).

Same interface as :class:`SplitSoftmax`: the output ``weight`` and ``bias`` belong to the model
and are passed to every call; this module owns ``latent`` (W_l, b_l) and ``prior`` (W_p).
"""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

DEFAULT_MAX_CHUNK_ELEMENTS = 2**25  # 128 MiB of float32 logits per chunk


def _mixture_log_probs(latent, log_prior, weight, bias):
    # latent (n, K, E), log_prior (n, K) -> (n, V)
    logits = F.linear(latent, weight, bias)  # (n, K, V)
    return torch.logsumexp(log_prior.unsqueeze(-1) + F.log_softmax(logits, dim=-1), dim=1)


def _mixture_target_log_probs(latent, log_prior, weight, bias, target):
    # latent (n, K, E), log_prior (n, K), target (n,) -> (n,)
    logits = F.linear(latent, weight, bias)  # (n, K, V)
    log_softmax = F.log_softmax(logits, dim=-1)
    index = target.view(-1, 1, 1).expand(-1, logits.size(1), 1)  # (n, K, 1)
    per_expert = log_softmax.gather(2, index).squeeze(2)  # (n, K)
    return torch.logsumexp(log_prior + per_expert, dim=1)


class MixtureOfSoftmaxes(nn.Module):
    """K softmaxes over a shared (tied) output embedding, mixed by a context-dependent prior.

    hidden_size: size of the features (the last recurrent layer, ``--nhidlast``).
    embed_dim: the output embedding's width E (``--emsize``); each expert's latent has this size.
    n_experts: K. ``K = 1`` is a plain softmax of ``tanh(W_l h + b_l)`` through the embedding.
    dropout_latent: locked dropout on the latent (the reference's ``--dropoutl``).
    max_chunk_elements: bound on the K x V logits formed at once; 0 forms them for all tokens
        in one piece, without recomputation (the reference's memory behaviour).
    shared_mask: the latent dropout's mask is drawn once per stream (as the reference); False
        draws one per element, as deepmind/lamb's `mixture_of_softmaxes` with its default
        `shared_mask_dropout=False` (the Mogrifier LSTM's WikiText-2 model).

    Features may come as (B, T, H), batch-major as the recurrent decoder produces them: in
    training the latent dropout then draws one mask per stream b and reuses it at every step t,
    as the reference's LockedDropout on its time-major (T, B, K * E) latent. A flat (N, H) input
    is N streams of one step each (one mask per row).
    """

    def __init__(
        self,
        hidden_size: int,
        embed_dim: int,
        n_experts: int,
        dropout_latent: float = 0.0,
        max_chunk_elements: int = DEFAULT_MAX_CHUNK_ELEMENTS,
        shared_mask: bool = True,
    ):
        super().__init__()
        if n_experts < 1:
            raise ValueError(f"--n-experts must be at least 1, got {n_experts}")
        if not 0.0 <= dropout_latent < 1.0:
            raise ValueError(f"--dropoutl must be in [0, 1), got {dropout_latent}")
        if max_chunk_elements < 0:
            raise ValueError(f"--mos-chunk-elements must be >= 0 (0: no chunking), got {max_chunk_elements}")
        self.hidden_size = hidden_size
        self.embed_dim = embed_dim
        self.n_experts = n_experts
        self.dropout_latent = dropout_latent
        self.max_chunk_elements = max_chunk_elements
        self.shared_mask = shared_mask
        # PyTorch's default Linear initialisation, as in the reference (its init_weights only
        # touches the embedding and the output bias).
        self.latent = nn.Linear(hidden_size, n_experts * embed_dim)
        self.prior = nn.Linear(hidden_size, n_experts, bias=False)

    def extra_repr(self) -> str:
        return (
            f"hidden_size={self.hidden_size}, embed_dim={self.embed_dim}, n_experts={self.n_experts}, "
            f"dropout_latent={self.dropout_latent}, max_chunk_elements={self.max_chunk_elements}"
        )

    def _latent_and_prior(self, features: torch.Tensor):
        """features (..., H) -> latent (N, K, E) after locked dropout, log prior (N, K)."""
        latent = torch.tanh(self.latent(features))  # (..., K * E)
        if self.training and self.dropout_latent > 0.0:
            keep = 1.0 - self.dropout_latent
            # one mask per stream: (B, 1, K * E) for (B, T, ...) features, (N, K * E) for flat ones
            shared = self.shared_mask and latent.dim() == 3
            mask_shape = (latent.size(0), 1, latent.size(-1)) if shared else latent.shape
            mask = latent.new_empty(mask_shape).bernoulli_(keep) / keep
            latent = latent * mask
        latent = latent.reshape(-1, self.n_experts, self.embed_dim)  # (N, K, E)
        log_prior = F.log_softmax(self.prior(features).reshape(-1, self.n_experts), dim=-1)  # (N, K)
        return latent, log_prior

    def _chunk_rows(self, vocab_size: int) -> int:
        if self.max_chunk_elements == 0:
            return 0
        return max(1, self.max_chunk_elements // (self.n_experts * vocab_size))

    def _chunked(self, fn, latent, log_prior, weight, bias, *per_row):
        rows = self._chunk_rows(weight.size(0))
        n = latent.size(0)
        if rows == 0 or rows >= n:  # one piece: recomputing it would not lower the peak
            return fn(latent, log_prior, weight, bias, *per_row)
        recompute = torch.is_grad_enabled()
        pieces = []
        for start in range(0, n, rows):
            args = [t[start : start + rows] for t in (latent, log_prior, *per_row)]
            args = args[:2] + [weight, bias] + args[2:]
            if recompute:
                pieces.append(checkpoint(fn, *args, use_reentrant=False))
            else:
                pieces.append(fn(*args))
        return torch.cat(pieces)

    def log_probs(
        self, features: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """Full log distribution: features (..., H), weight (V, E), bias (V,) -> (..., V)."""
        lead = features.shape[:-1]
        latent, log_prior = self._latent_and_prior(features)
        out = self._chunked(_mixture_log_probs, latent, log_prior, weight, bias)  # (N, V)
        return out.view(*lead, weight.size(0))

    def target_log_probs(
        self,
        features: torch.Tensor,
        weight: torch.Tensor,
        bias: Optional[torch.Tensor],
        target: torch.Tensor,
    ) -> torch.Tensor:
        """log p(target): features (..., H), target (...) int64 in [0, V) -> (...)."""
        latent, log_prior = self._latent_and_prior(features)
        flat_target = target.reshape(-1)  # (N,)
        out = self._chunked(_mixture_target_log_probs, latent, log_prior, weight, bias, flat_target)
        return out.view(target.shape)
