"""`awd_dynamic_eval`: fairseq-eval-lm with dynamic evaluation (Krause, Kahembwe, Murray and
Renals, arXiv 1709.07432, ICML 2018; benkrause/dynamic-evaluation `dynamiceval.py`): the model
adapts its weights to the text it has already scored.

    fairseq-eval-lm data-bin/ptb --user-dir awd_fairseq --task awd_dynamic_eval --path ckpt.pt \\
        --gen-subset test --dyneval-lr 5e-5 --dyneval-lambda 0.002        # --bptt 5 by default

* Gradient statistics (modules/dynamic_eval.py), once per checkpoint: the training split as
  `--dyneval-stats-streams` (100) contiguous streams, segments of `--bptt`, the model in eval mode,
  the recurrent state carried and detached; cached next to the checkpoint as
  `<checkpoint>.dyneval-<key>.pt` (tensors only), the key naming the checkpoint's content, the
  training tokens, --bptt, the streams, the segment cap and the context, so that anything else
  recomputes them.
* Evaluation: one stream, segments of `--bptt`. fairseq's SequenceScorer calls the model once per
  segment (under no_grad); `DynamicEvalLM.forward` re-enables autograd, computes the segment's
  log-probabilities with the current weights (what the scorer reports), backpropagates their
  mean and updates the weights before returning those scores: one forward and one backward pass
  per segment, as in the reference. Every scored token counts once.
* Each eval_lm_dataloader call (each split) starts again from the checkpoint's weights; the
  checkpoint file is only read.
* `--dyneval-pointer` mixes the continuous cache pointer (--pointer-window/theta/lambda, see
  cache_pointer_lm.py) into the reported scores; the gradient is the model's own cross-entropy.
* Models without recurrent state (transformer_lm) see each segment with the `--dyneval-context`
  tokens before it (recomputed with the current weights).
"""
import hashlib
import logging
import os
from dataclasses import dataclass, field
from typing import List, Optional

import torch
from fairseq.tasks import register_task
from omegaconf import II
from torch import Tensor

from ..modules.cache_pointer import CachePointer
from ..modules.dynamic_eval import DynamicEvalUpdate, GradientStatistics, load_statistics, save_statistics
from ..modules.stream_state import StreamState
from .bptt_dataset import batchify
from .bptt_schedule import fixed_windows
from .cache_pointer_lm import CachePointerLM, CachePointerLMConfig, CachePointerLMTask, PointerWindowIterator

logger = logging.getLogger(__name__)


@dataclass
class DynamicEvalLMConfig(CachePointerLMConfig):
    bptt: int = field(default=5, metadata={"help": "segment length of dynamic evaluation and of its statistics "
                                                   "(dynamiceval.py --bptt)"})
    dyneval_lr: float = field(default=5e-5, metadata={"help": "learning rate eta (dynamiceval.py --lr)"})
    dyneval_lambda: float = field(default=0.002, metadata={"help": "decay rate lambda towards the checkpoint's "
                                                                   "weights (--lamb)"})
    dyneval_epsilon: float = field(default=2e-5, metadata={"help": "added to MS in the update (--epsilon)"})
    dyneval_stats_streams: int = field(default=100, metadata={"help": "contiguous streams of the training split "
                                                                      "for the gradient statistics (--batch_size)"})
    dyneval_max_segments: int = field(default=0, metadata={"help": "cap on the statistics' segments, 0 = the whole "
                                                                   "training split (--max_batches)"})
    dyneval_stats: Optional[str] = field(default=None, metadata={"help": "file of the gradient statistics "
                                                                         "(default: next to the checkpoint)"})
    dyneval_no_cache: bool = field(default=False, metadata={"help": "recompute the statistics, write no file"})
    dyneval_pointer: bool = field(default=False, metadata={"help": "mix the cache pointer (--pointer-*) into the "
                                                                   "scores of the adapting model"})
    dyneval_context: int = field(default=0, metadata={"help": "models without recurrent state (transformer_lm): "
                                                              "tokens before each segment fed as context"})
    checkpoint_path: Optional[str] = II("common_eval.path")


class DynamicEvalLM(CachePointerLM):
    """The checkpoint's model, scored segment by segment and updated after each (see module doc).
    `update` is set by the task once the weights are loaded; `pointer` is optional."""

    def __init__(self, model, pointer: Optional[CachePointer], context: int = 0):
        super().__init__(model, pointer, full_distribution=False, context=context)
        self.update: Optional[DynamicEvalUpdate] = None
        self.segments = 0  # segments scored since the stream started

    def reset(self) -> None:
        """A new stream from the checkpoint's weights: pointer history and context cleared."""
        self.segments = 0
        if self.pointer is not None:
            self.pointer.reset()
        self._context_tokens = None
        if self.update is not None:
            self.update.reset()

    def adapted_parameters(self):
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def forward(self, src_tokens: Tensor, src_lengths=None, stream_state: Optional[StreamState] = None,
                target: Optional[Tensor] = None, **unused):
        """log p(target) (1, T, 1) under the weights before this segment's update."""
        if target is None or src_tokens.size(0) != 1:
            raise ValueError("DynamicEvalLM reads one stream with its targets: use it through --task awd_dynamic_eval")
        if self.update is None:
            raise RuntimeError("DynamicEvalLM has no update rule yet: the task sets it in eval_lm_dataloader")
        with torch.enable_grad():
            # log p(target) as the cache pointer's path computes it (the split softmax's target-only
            # blocks for our decoders, the full distribution for others)
            h, scores = self.model_outputs(src_tokens, target, stream_state)  # (1, T, H), (1, T)
            grads = torch.autograd.grad(-scores.mean(), self.update.params, allow_unused=True)
        self.check_finite(scores)
        self.update.step(grads)
        self.segments += 1
        scores = scores.detach()
        if self.pointer is not None:
            scores = self.pointer.score(h[0].detach(), target[0], scores[0]).unsqueeze(0)
        return scores.unsqueeze(2), {}  # (1, T, 1)

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


def training_statistics(model: DynamicEvalLM, stream: Tensor, streams: int, bptt: int, max_segments: int = 0):
    """(MS per adapted parameter, segments): `stream` as `streams` contiguous streams (N, B) cut
    into segments of `bptt`, state carried and detached, the gradient of each segment's mean
    cross-entropy (dynamiceval.py `gradstat`)."""
    params = [p for _, p in model.adapted_parameters()]
    device = params[0].device
    data = batchify(stream, streams)  # (N, B)
    windows = fixed_windows(data.size(0), bptt)
    if max_segments > 0:
        windows = windows[:max_segments]
    model.eval()
    model.reset()
    stats, state = GradientStatistics(params), StreamState()
    for i, (start, length) in enumerate(windows):
        src = data[start:start + length].t().to(device)  # (B, T)
        tgt = data[start + 1:start + 1 + length].t().to(device)
        state.seek(start)
        with torch.enable_grad():
            _, log_p = model.model_outputs(src, tgt, state)  # (B, T)
            stats.add(torch.autograd.grad(-log_p.mean(), params, allow_unused=True))
        state.commit(start + length)
        if (i + 1) % 1000 == 0:
            logger.info("gradient statistics: %d / %d segments", i + 1, len(windows))
    model.reset()
    return stats.ms(), stats.segments


def file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@register_task("awd_dynamic_eval", dataclass=DynamicEvalLMConfig)
class DynamicEvalLMTask(CachePointerLMTask):
    def build_model(self, cfg, from_checkpoint=False):
        if self.cfg.pointer_context:
            raise ValueError("awd_dynamic_eval: give the context of models without state as --dyneval-context")
        model = super(CachePointerLMTask, self).build_model(cfg, from_checkpoint)
        pointer = self.new_pointer() if self.cfg.dyneval_pointer else None
        wrapped = DynamicEvalLM(model, pointer, self.cfg.dyneval_context)
        if not wrapped.carries_state:
            logger.info("%s: each segment sees the %d tokens before it as context (--dyneval-context)",
                        type(model).__name__, wrapped.context)
        self.pointer_models.append(wrapped)
        return wrapped

    # -- gradient statistics ------------------------------------------------------------------

    def statistics_key(self, model: DynamicEvalLM, train_tokens: Tensor) -> str:
        cfg = self.cfg
        shapes = ",".join(f"{n}:{tuple(p.shape)}" for n, p in model.adapted_parameters())
        tokens = hashlib.sha256(train_tokens.numpy().tobytes()).hexdigest()
        checkpoint = file_digest(cfg.checkpoint_path) if cfg.checkpoint_path else "unknown"
        return (f"checkpoint={checkpoint}|train={cfg.train_subset}:{tokens}|bptt={cfg.bptt}|"
                f"streams={cfg.dyneval_stats_streams}|max_segments={cfg.dyneval_max_segments}|"
                f"context={model.context}|params={hashlib.sha256(shapes.encode()).hexdigest()}")

    def statistics_path(self, key: str) -> Optional[str]:
        if self.cfg.dyneval_stats:
            return self.cfg.dyneval_stats
        if not self.cfg.checkpoint_path:
            return None
        return f"{self.cfg.checkpoint_path}.dyneval-{hashlib.sha1(key.encode()).hexdigest()[:10]}.pt"

    def statistics(self, model: DynamicEvalLM) -> List[Tensor]:
        """MS per adapted parameter: from the cache when its key matches, else computed (and saved)."""
        cfg = self.cfg
        if cfg.checkpoint_path and os.pathsep in cfg.checkpoint_path:
            raise ValueError("awd_dynamic_eval adapts one model: give a single checkpoint to --path")
        split = cfg.train_subset
        if split not in self.datasets:
            self.load_dataset(split)
        tokens = self.datasets[split].tokens
        names = [n for n, _ in model.adapted_parameters()]
        key = self.statistics_key(model, tokens)
        path = None if cfg.dyneval_no_cache else self.statistics_path(key)
        ms = load_statistics(path, names, key) if path else None
        if ms is not None:
            logger.info("gradient statistics read from %s", path)
        else:
            logger.info("gradient statistics on %s: %d streams, segments of %d", split, cfg.dyneval_stats_streams,
                        cfg.bptt)
            ms, segments = training_statistics(model, tokens, cfg.dyneval_stats_streams, cfg.bptt,
                                               cfg.dyneval_max_segments)
            if path:
                save_statistics(path, names, ms, segments, key)
                logger.info("gradient statistics (%d segments) saved to %s", segments, path)
        del self.datasets[split]
        return ms

    # -- evaluation ---------------------------------------------------------------------------

    def start_stream(self, model: DynamicEvalLM) -> None:
        """Before a split: the update rule with the current options, from the checkpoint's weights."""
        cfg = self.cfg
        if model.update is None:
            params = [p for _, p in model.adapted_parameters()]
            ms = self.statistics(model)
            model.update = DynamicEvalUpdate(params, ms, cfg.dyneval_lr, cfg.dyneval_lambda, cfg.dyneval_epsilon)
        else:
            model.update.configure(cfg.dyneval_lr, cfg.dyneval_lambda, cfg.dyneval_epsilon)
        model.reset()
        logger.info("dynamic evaluation: eta %g, lambda %g, epsilon %g, segments of %d%s", cfg.dyneval_lr,
                    cfg.dyneval_lambda, cfg.dyneval_epsilon, cfg.bptt, ", with the cache pointer"
                    if model.pointer is not None else "")

    def eval_lm_dataloader(
        self, dataset, max_tokens=None, batch_size=None, max_positions=None, num_shards=1, shard_id=0,
        num_workers=1, data_buffer_size=10, context_window=0,
    ):
        if context_window > 0:
            raise ValueError("--context-window does not apply: use --dyneval-context for models without state")
        if num_shards > 1:
            raise ValueError("dynamic evaluation reads the split as one stream, on one process")
        if len(self.pointer_models) != 1:
            raise ValueError("awd_dynamic_eval adapts one model: give a single checkpoint to --path")
        if self.cfg.test_batch_size != 1:
            logger.warning("dynamic evaluation reads one stream: --test-batch-size %d ignored", self.cfg.test_batch_size)
        self.start_stream(self.pointer_models[0])
        itr = self.window_iterator(dataset, 1, False, seed=self.cfg.seed, num_workers=num_workers,
                                   buffer_size=data_buffer_size)
        return PointerWindowIterator(itr.next_epoch_itr(shuffle=False), StreamState())

    def train_step(self, *args, **kwargs):
        raise RuntimeError("awd_dynamic_eval is for evaluation (fairseq-eval-lm): train with awd_language_modeling")
