"""`awd_cache_pointer`: fairseq-eval-lm with the continuous cache pointer (Grave, Joulin and
Usunier, arXiv 1612.04426), as salesforce/awd-lstm-lm pointer.py evaluates it:

    fairseq-eval-lm data-bin/ptb --user-dir awd_fairseq --task awd_cache_pointer --path ckpt.pt \\
        --pointer-window 500 --pointer-theta 1.0 --pointer-lambda 0.1

    p(w) = lambda * p_cache(w) + (1 - lambda) * p_model(w)
    p_cache(w) = sum over the last `window` positions i whose next word is w of softmax_i(theta * h_t . h_i)

with `h` the model's final features: the last recurrent layer's output for awd_lstm / qrnn (their
dropout is off in evaluation), the decoder's output features for fairseq's transformer_lm.

* One stream, batch size 1, whatever `--test-batch-size` says; the cache spans window
  boundaries, so the result does not depend on `--bptt` (see modules/cache_pointer.py).
* Positions count from the stream's leading `</s>` (tasks/token_stream.py): position 0
  predicts the split's first word. The cache is used at position t iff t > window, i.e. once more
  than `window` positions have been seen, as the original counts. The original also skips the
  cache at the first token of every `--bptt` chunk once warm (its result depends on `--bptt`);
  `--pointer-skip-chunk-start` reproduces that.
* Models without recurrent state (transformer_lm) see each window alone, or the window and the
  `--pointer-context` tokens before it; the pointer's history spans windows either way.

fairseq-eval-lm scores with `SequenceScorer`, which calls `model(**net_input)` and gathers
`get_normalized_probs(...)` at the targets. The task therefore builds `CachePointerLM` around the
checkpoint's model and passes the targets in `net_input`; by default its forward computes only
`log p(y_t)` (O(window) per token, no (T, V) mixture) and `get_normalized_probs` returns it
broadcast over the vocabulary as a stride-0 view: right wherever SequenceScorer reads it (at the
target), not a distribution anywhere else. `--pointer-full-distribution` returns the whole mixture
instead (exact everywhere, O(V) more per token).
"""
import logging
from dataclasses import dataclass, field
from typing import Iterator, Optional, Tuple

import torch
from fairseq.models import BaseFairseqModel
from fairseq.tasks import register_task
from torch import Tensor

from ..modules.cache_pointer import CachePointer
from ..modules.stream_state import StatefulWindowIterator, StreamState
from . import input_checks
from .awd_language_modeling import AWDLanguageModelingConfig, AWDLanguageModelingTask

logger = logging.getLogger(__name__)


@dataclass
class CachePointerLMConfig(AWDLanguageModelingConfig):
    pointer_window: int = field(default=500, metadata={"help": "positions the cache attends over (pointer.py --window)"})
    pointer_theta: float = field(default=1.0, metadata={"help": "inverse temperature of the cache softmax (--theta)"})
    pointer_lambda: float = field(default=0.1, metadata={"help": "weight of the cache in the mixture (--lambdasm)"})
    pointer_skip_chunk_start: bool = field(
        default=False,
        metadata={"help": "as pointer.py: no cache at the first token of each --bptt window once warm (depends on --bptt)"},
    )
    pointer_full_distribution: bool = field(
        default=False,
        metadata={"help": "give fairseq's scorer the whole (T, V) mixture instead of the target's probability only"},
    )
    pointer_context: int = field(
        default=0,
        metadata={"help": "models without recurrent state (transformer_lm): tokens of the stream before each window "
                  "fed as context (--bptt + this must fit the model's max positions)"},
    )


class CachePointerLM(BaseFairseqModel):
    """A language model whose predictions are mixed with a continuous cache; evaluation only.

    Holds the checkpoint's model (`.model`, its state dict keys unchanged) and one CachePointer;
    `reset()` starts a new stream.
    """

    def __init__(self, model: BaseFairseqModel, pointer: CachePointer, full_distribution: bool = False,
                 context: int = 0):
        super().__init__()
        self.model = model
        self.pointer = pointer
        self.full_distribution = full_distribution
        self.carries_state = getattr(model.decoder, "supports_stream_state", False)
        self.context = 0 if self.carries_state else context
        self._context_tokens: Optional[Tensor] = None  # (1, <= context) the stream before the window

    def reset(self) -> None:
        self.pointer.reset()
        self._context_tokens = None

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args=None):
        return self.model.load_state_dict(state_dict, strict=strict, model_cfg=model_cfg, args=args)

    def max_positions(self):
        return self.model.max_positions()

    def model_outputs(
        self, src_tokens: Tensor, target: Tensor, stream_state: Optional[StreamState] = None, full: bool = False
    ) -> Tuple[Tensor, Tensor]:
        """Run the model on one window: `(h (B, T, H), log p_model(target) (B, T))`, or with `full`
        the whole `log p_model` (B, T, V) in place of the second. Advances the stream (state or context)."""
        T = src_tokens.size(1)
        if self.carries_state:
            features, extra = self.model(src_tokens, stream_state=stream_state, features_only=True)
        else:
            tokens = src_tokens if self._context_tokens is None else torch.cat([self._context_tokens, src_tokens], 1)
            limit = self.model.max_positions()
            if isinstance(limit, int) and tokens.size(1) > limit:
                raise ValueError(f"--bptt + --pointer-context = {tokens.size(1)} tokens exceed the model's "
                                 f"{limit} positions")
            features, extra = self.model(tokens, features_only=True)
            features = features[:, -T:]
            if self.context > 0:
                self._context_tokens = tokens[:, -self.context:]
        decoder = self.model.decoder
        if not full and hasattr(decoder, "target_log_probs"):  # split softmax: only the blocks needed
            return features, decoder.target_log_probs(features, target).view_as(target).float()
        net_output = (decoder.output_layer(features), extra)
        lprobs = self.model.get_normalized_probs(net_output, log_probs=True, sample={"target": target}).float()
        return features, (lprobs if full else lprobs.gather(2, target.unsqueeze(2)).squeeze(2))

    def forward(self, src_tokens: Tensor, src_lengths=None, stream_state: Optional[StreamState] = None,
                target: Optional[Tensor] = None, **unused):
        """Mixture log-probabilities: `(1, T, 1)` at the targets, or `(1, T, V)` with full_distribution."""
        if target is None or src_tokens.size(0) != 1:
            raise ValueError("CachePointerLM reads one stream with its targets: use it through --task awd_cache_pointer")
        h, model_lprobs = self.model_outputs(src_tokens, target, stream_state, full=self.full_distribution)
        if self.full_distribution:
            return self.pointer.full_distribution(h[0], target[0], model_lprobs[0]).unsqueeze(0), {}
        return self.pointer.score(h[0], target[0], model_lprobs[0]).view(1, -1, 1), {}

    def get_normalized_probs(self, net_output, log_probs: bool, sample=None):
        scores = net_output[0].float()
        scores = scores if log_probs else scores.exp()
        if scores.size(-1) == 1:  # target-only: broadcast over the vocabulary, no memory (see module docstring)
            scores = scores.expand(*scores.shape[:-1], len(self.model.decoder.dictionary))
        return scores


@torch.no_grad()
def window_outputs(task: "CachePointerLMTask", model: CachePointerLM, split: str) -> Iterator[Tuple[Tensor, Tensor, Tensor]]:
    """Read `split` as fairseq-eval-lm does and yield, window by window, `(h (T, H), targets (T,),
    log p_model(targets) (T,))`: one forward pass that scripts reuse for many pointers."""
    if split not in task.datasets:
        task.load_dataset(split)
    model.eval()
    device = next(model.parameters()).device
    for sample in task.eval_lm_dataloader(task.dataset(split)):
        net_input, target = sample["net_input"], sample["target"].to(device)
        h, lprobs = model.model_outputs(net_input["src_tokens"].to(device), target, net_input["stream_state"])
        yield h[0], target[0], lprobs[0]


class PointerWindowIterator(StatefulWindowIterator):
    """The base task's stateful windows, with the targets in `net_input` for CachePointerLM."""

    def __iter__(self):
        for sample in super().__iter__():
            sample["net_input"]["target"] = sample["target"]
            yield sample


@register_task("awd_cache_pointer", dataclass=CachePointerLMConfig)
class CachePointerLMTask(AWDLanguageModelingTask):
    def __init__(self, cfg: CachePointerLMConfig, dictionary):
        super().__init__(cfg, dictionary)
        self.pointer_models = []  # every CachePointerLM built, reset at the start of each stream

    def new_pointer(self) -> CachePointer:
        cfg = self.cfg
        return CachePointer(window=cfg.pointer_window, theta=cfg.pointer_theta, lambdah=cfg.pointer_lambda,
                            skip_chunk_start=cfg.pointer_skip_chunk_start)

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        wrapped = CachePointerLM(model, self.new_pointer(), self.cfg.pointer_full_distribution,
                                 self.cfg.pointer_context)
        if not wrapped.carries_state:
            logger.info("%s: each --bptt window sees the %d tokens before it as context (--pointer-context); "
                        "the cache spans windows", type(model).__name__, wrapped.context)
        self.pointer_models.append(wrapped)
        return wrapped

    def eval_lm_dataloader(
        self, dataset, max_tokens=None, batch_size=None, max_positions=None, num_shards=1, shard_id=0,
        num_workers=1, data_buffer_size=10, context_window=0,
    ):
        if context_window > 0:
            raise ValueError("--context-window does not apply: use --pointer-context for models without state")
        input_checks.check_eval_lm_batch_size(self.cfg, batch_size)
        if num_shards > 1:
            raise ValueError("the cache pointer reads the split as one stream, on one process")
        if self.cfg.test_batch_size != 1:
            logger.warning("the cache pointer reads one stream: --test-batch-size %d ignored", self.cfg.test_batch_size)
        for model in self.pointer_models:
            model.reset()
        itr = self.window_iterator(dataset, 1, False, seed=self.cfg.seed, num_workers=0,  # see the base task
                                   buffer_size=data_buffer_size)
        return PointerWindowIterator(itr.next_epoch_itr(shuffle=False))

    def train_step(self, *args, **kwargs):
        raise RuntimeError("awd_cache_pointer is for evaluation (fairseq-eval-lm): train with awd_language_modeling")

    def valid_step(self, *args, **kwargs):
        raise RuntimeError("awd_cache_pointer is for evaluation (fairseq-eval-lm), not fairseq-validate")
