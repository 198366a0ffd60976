"""A trained language model scored along one stream, with two optional components composed around
it: the continuous cache pointer (Grave, Joulin and Usunier, arXiv 1612.04426; modules/
cache_pointer.py) mixed into its scores, and dynamic evaluation (Krause et al., arXiv 1709.07432;
modules/dynamic_eval.py) adapting its weights after each window. Either, both or neither; built by
the evaluation tasks (tasks/cache_pointer_lm.py, tasks/dynamic_eval_lm.py), evaluation only.

The model is any fairseq language model: ours carry their recurrent state through the
`StreamState` in net_input; a stateless one (fairseq's transformer_lm) sees each window alone, or
with the `context` tokens of the stream before it. fairseq-eval-lm's SequenceScorer gathers the
scores at the targets, so forward returns `log p(target)` (1, T, 1) and `get_normalized_probs`
broadcasts it over the vocabulary as a stride-0 view (right where the scorer reads, at the target);
`full_distribution` returns the whole pointer mixture (1, T, V) instead.
"""
from typing import Optional, Tuple

import torch
from fairseq.models import BaseFairseqModel
from torch import Tensor

from ..modules.cache_pointer import CachePointer
from ..modules.dynamic_eval import DynamicEvalUpdate
from ..modules.rnn_gradients import rnn_gradients
from ..modules.stream_state import StreamState
from ..modules.target_scores import target_only_probs


class StreamScorer(BaseFairseqModel):
    """`.model` is the checkpoint's model (its state dict keys unchanged); `reset()` starts a stream.

    `update`, once set (by the dynamic-evaluation task, after the weights are loaded), makes every
    forward adapt the weights to the window it has just scored."""

    def __init__(self, model: BaseFairseqModel, pointer: Optional[CachePointer] = None,
                 full_distribution: bool = False, context: int = 0):
        super().__init__()
        self.model = model
        self.pointer = pointer
        self.full_distribution = full_distribution
        self.carries_state = getattr(model.decoder, "supports_stream_state", False)
        self.context = 0 if self.carries_state else context
        self._context_tokens: Optional[Tensor] = None  # (1, <= context): the stream before the window
        self.update: Optional[DynamicEvalUpdate] = None
        self.segments = 0  # windows scored since the stream started

    def reset(self) -> None:
        """A new stream: pointer history and context cleared, the checkpoint's weights back."""
        self.segments = 0
        self._context_tokens = None
        if self.pointer is not None:
            self.pointer.reset()
        if self.update is not None:
            self.update.reset()

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args=None):
        return self.model.load_state_dict(state_dict, strict=strict, model_cfg=model_cfg, args=args)

    def max_positions(self):
        return self.model.max_positions()

    def adapted_parameters(self):
        """(name, parameter) of every weight dynamic evaluation adapts (each tensor once)."""
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    # -- the model on one window -----------------------------------------------------------

    def model_outputs(
        self, src_tokens: Tensor, target: Tensor, stream_state: Optional[StreamState] = None, full: bool = False
    ) -> Tuple[Tensor, Tensor]:
        """`(h (B, T, H), log p_model(target) (B, T))`, or with `full` the whole `log p_model`
        (B, T, V) in place of the second; `h` are the model's final features. Advances the stream."""
        T = src_tokens.size(1)
        if self.carries_state:
            features, extra = self.model(src_tokens, stream_state=stream_state, features_only=True)
        else:
            tokens = src_tokens if self._context_tokens is None else torch.cat([self._context_tokens, src_tokens], 1)
            limit = self.model.max_positions()
            if isinstance(limit, int) and tokens.size(1) > limit:
                raise ValueError(f"the window and --stream-context are {tokens.size(1)} tokens, more than the "
                                 f"model's {limit} positions: lower --stream-context or the window length")
            features, extra = self.model(tokens, features_only=True)
            features = features[:, -T:]
            if self.context > 0:
                self._context_tokens = tokens[:, -self.context:].detach()
        decoder = self.model.decoder
        if not full and hasattr(decoder, "target_log_probs"):  # split softmax: only the blocks needed
            return features, decoder.target_log_probs(features, target).view_as(target).float()
        net_output = (decoder.output_layer(features), extra)
        lprobs = self.model.get_normalized_probs(net_output, log_probs=True, sample={"target": target}).float()
        return features, (lprobs if full else lprobs.gather(2, target.unsqueeze(2)).squeeze(2))

    def forward(self, src_tokens: Tensor, src_lengths=None, stream_state: Optional[StreamState] = None,
                target: Optional[Tensor] = None, **unused):
        """log p(target) (1, T, 1) under the weights before this window's update, or (1, T, V)."""
        if target is None or src_tokens.size(0) != 1:
            raise ValueError("StreamScorer reads one stream with its targets: use it through --task "
                             "awd_cache_pointer or --task awd_dynamic_eval")
        if self.update is not None:
            h, scores = self.adapted_outputs(src_tokens, target, stream_state)
        else:
            h, scores = self.model_outputs(src_tokens, target, stream_state, full=self.full_distribution)
        self.segments += 1
        if self.pointer is None:
            return scores.unsqueeze(-1) if scores.dim() == 2 else scores, {}
        if self.full_distribution:
            return self.pointer.full_distribution(h[0], target[0], scores[0]).unsqueeze(0), {}
        return self.pointer.score(h[0], target[0], scores[0]).view(1, -1, 1), {}

    def adapted_outputs(self, src_tokens: Tensor, target: Tensor, stream_state: Optional[StreamState]):
        """The window's (h, log p(target)) with the current weights, then one update from the
        gradient of their mean (fairseq's scorer runs under no_grad: autograd is re-enabled here)."""
        with torch.enable_grad(), rnn_gradients(self.model):
            h, scores = self.model_outputs(src_tokens, target, stream_state)  # (1, T, H), (1, T)
            grads = torch.autograd.grad(-scores.mean(), self.update.params, allow_unused=True)
        self.check_finite(scores)
        self.update.step(grads)
        return h.detach(), scores.detach()

    def check_finite(self, scores: Tensor) -> None:
        """Stop at the first non-finite log-probability, before it reaches the weights: the rates
        made the weights diverge (or, before any update, the checkpoint's model itself fails)."""
        if bool(torch.isfinite(scores).all()):
            return
        if self.segments == 0:
            raise FloatingPointError("the model's own log-probabilities are not finite on the first segment, "
                                     "before any update: check the checkpoint (--path)")
        raise FloatingPointError(
            f"dynamic evaluation diverged: a non-finite log-probability after {self.segments} updates; lower "
            f"--dyneval-lr (now {self.update.lr:g}) or raise --dyneval-epsilon (now {self.update.epsilon:g})")

    def get_normalized_probs(self, net_output, log_probs: bool, sample=None):
        scores = net_output[0].float()
        scores = scores if log_probs else scores.exp()
        if scores.size(-1) == 1:  # target-only (see the module docstring)
            return target_only_probs(scores, len(self.model.decoder.dictionary))
        return scores
