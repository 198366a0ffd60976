"""`awd_dynamic_eval`: fairseq-eval-lm with dynamic evaluation (Krause, Kahembwe, Murray and
Renals, arXiv 1709.07432, ICML 2018; benkrause/dynamic-evaluation `dynamiceval.py`): the model
adapts its weights to the text it has already scored, optionally with the cache pointer mixed in.

    fairseq-eval-lm data-bin/ptb --user-dir awd_fairseq --task awd_dynamic_eval --path ckpt.pt \\
        --gen-subset test --dyneval-lr 5e-5 --dyneval-lambda 0.002        # segments of --dyneval-bptt 5

* Gradient statistics (modules/dynamic_eval.py), once per checkpoint: the training split as
  `--dyneval-stats-streams` (100) contiguous streams in segments of `--dyneval-bptt`, the model in
  eval mode, the state carried and detached; cached next to the checkpoint as
  `<checkpoint>.dyneval-<key>.pt` (tensors only), the key naming the checkpoint's content, the
  training tokens, the segment length, the streams, the segment cap and the context, so that
  anything else recomputes them.
* Evaluation: one stream in segments of `--dyneval-bptt`; each is scored with the current weights
  (what fairseq-eval-lm reports), then the weights take one update from the gradient of its mean
  cross-entropy (models/stream_scorer.py). Each split starts again from the checkpoint's weights;
  the checkpoint file is only read.
* `--dyneval-pointer` mixes the cache pointer (`--pointer-window/theta/lambda`) into the reported
  scores; the gradient is the model's own cross-entropy.
"""
import hashlib
import logging
import os
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.tasks import register_task
from omegaconf import II
from torch import Tensor

from ..files import sha256_of
from ..models.stream_scorer import StreamScorer
from ..modules.dynamic_eval import (HYPER_SCALES, DynamicEvalUpdate, gradient_statistics, load_statistics,
                                    paper_scale, save_statistics)
from ..modules.rnn_gradients import rnn_gradients
from .bptt_dataset import batchify
from .bptt_schedule import fixed_windows
from .cache_pointer_lm import PointerOptions, build_pointer
from .stream_scoring import StreamScoringConfig, StreamScoringTask

logger = logging.getLogger(__name__)


@dataclass
class DynamicEvalOptions(FairseqDataclass):
    """Dynamic evaluation's own options (dynamiceval.py's flags)."""

    dyneval_bptt: int = field(default=5, metadata={"help": "segment length of dynamic evaluation and of its "
                                                           "statistics (dynamiceval.py --bptt)"})
    dyneval_lr: float = field(default=5e-5, metadata={"help": "learning rate eta (dynamiceval.py --lr)"})
    dyneval_lambda: float = field(default=0.002, metadata={"help": "decay rate lambda towards the checkpoint's "
                                                                   "weights (--lamb)"})
    dyneval_epsilon: float = field(default=2e-5, metadata={"help": "added to MS in the update (--epsilon)"})
    dyneval_hyper_scale: ChoiceEnum(HYPER_SCALES) = field(
        default="paper",
        metadata={"help": "the scale --dyneval-lr / -lambda / -epsilon are given in: the paper's equations (the "
                  "reference's default), 'oldhyper' (dynamiceval.py --oldhyper, zihangdai/mos dynamiceval.py) or "
                  "'mos_ms' (zihangdai/mos dynamiceval.py --ms); see docs/dynamic_evaluation.md"},
    )
    dyneval_stats_streams: int = field(default=100, metadata={"help": "contiguous streams of the training split "
                                                                      "for the gradient statistics (--batch_size)"})
    dyneval_max_segments: int = field(default=0, metadata={"help": "cap on the statistics' segments, 0 = the whole "
                                                                   "training split (--max_batches)"})
    dyneval_stats: Optional[str] = field(default=None, metadata={"help": "file of the gradient statistics "
                                                                         "(default: next to the checkpoint)"})
    dyneval_no_cache: bool = field(default=False, metadata={"help": "recompute the statistics, write no file"})
    dyneval_pointer: bool = field(default=False, metadata={"help": "mix the cache pointer (--pointer-*) into the "
                                                                   "scores of the adapting model"})


@dataclass
class DynamicEvalLMConfig(DynamicEvalOptions, PointerOptions, StreamScoringConfig):
    train_subset: str = II("dataset.train_subset")  # the split of the gradient statistics
    checkpoint_path: Optional[str] = II("common_eval.path")


@register_task("awd_dynamic_eval", dataclass=DynamicEvalLMConfig)
class DynamicEvalLMTask(StreamScoringTask):
    name = "awd_dynamic_eval"
    window_flag = "--dyneval-bptt"

    def __init__(self, cfg: DynamicEvalLMConfig, dictionary):
        super().__init__(cfg, dictionary)
        self.statistics_segments = 0  # S of the statistics in use (the reference scales' conversion needs it)

    @classmethod
    def setup_task(cls, cfg: DynamicEvalLMConfig, **kwargs):
        if cfg.dyneval_bptt < 1:
            raise ValueError(f"--dyneval-bptt {cfg.dyneval_bptt} must be at least 1 (the segment length in tokens)")
        if cfg.checkpoint_path and os.pathsep in cfg.checkpoint_path:
            raise ValueError("awd_dynamic_eval adapts one model: give a single checkpoint to --path")
        return super().setup_task(cfg, **kwargs)

    def components(self) -> dict:
        return {"pointer": build_pointer(self.cfg) if self.cfg.dyneval_pointer else None}

    def window_length(self) -> int:
        return self.cfg.dyneval_bptt

    def start_stream(self, scorer: StreamScorer) -> None:
        """The update rule with the current options, from the checkpoint's weights."""
        cfg = self.cfg
        if scorer.update is None:
            params = [p for _, p in scorer.adapted_parameters()]
            ms, self.statistics_segments = self.statistics(scorer)
            scorer.update = DynamicEvalUpdate(params, ms, *self.rates(len(params)))
        else:
            scorer.update.configure(*self.rates(len(scorer.update.params)))
        update = scorer.update
        logger.info("dynamic evaluation: eta %g, lambda %g, epsilon %g (the paper's scale), segments of %d%s",
                    update.lr, update.lambdah, update.epsilon, cfg.dyneval_bptt,
                    ", with the cache pointer" if scorer.pointer is not None else "")

    def rates(self, tensors: int):
        """(eta, lambda, epsilon) in the paper's scale from the options (--dyneval-hyper-scale)."""
        cfg = self.cfg
        return paper_scale(str(cfg.dyneval_hyper_scale), cfg.dyneval_lr, cfg.dyneval_lambda, cfg.dyneval_epsilon,
                           self.statistics_segments, tensors)

    # -- gradient statistics ------------------------------------------------------------------

    def statistics_key(self, scorer: StreamScorer, train_tokens: Tensor) -> str:
        cfg = self.cfg
        shapes = ",".join(f"{n}:{tuple(p.shape)}" for n, p in scorer.adapted_parameters())
        tokens = hashlib.sha256(train_tokens.numpy().tobytes()).hexdigest()
        checkpoint = sha256_of(cfg.checkpoint_path) if cfg.checkpoint_path else "unknown"
        return (f"checkpoint={checkpoint}|train={cfg.train_subset}:{tokens}|bptt={cfg.dyneval_bptt}|"
                f"streams={cfg.dyneval_stats_streams}|max_segments={cfg.dyneval_max_segments}|"
                f"context={scorer.context}|params={hashlib.sha256(shapes.encode()).hexdigest()}")

    def statistics_path(self, key: str) -> Optional[str]:
        if self.cfg.dyneval_stats:
            return self.cfg.dyneval_stats
        if not self.cfg.checkpoint_path:
            return None
        return f"{self.cfg.checkpoint_path}.dyneval-{hashlib.sha1(key.encode()).hexdigest()[:10]}.pt"

    def statistics(self, scorer: StreamScorer) -> Tuple[List[Tensor], int]:
        """(MS per adapted parameter, segments): from the cache when its key matches, else computed (and saved)."""
        cfg = self.cfg
        if len(self.scorers) != 1:
            raise ValueError("awd_dynamic_eval adapts one model: give a single checkpoint to --path")
        split = cfg.train_subset
        self.load_dataset(split)
        tokens = self.datasets.pop(split).tokens
        names = [n for n, _ in scorer.adapted_parameters()]
        key = self.statistics_key(scorer, tokens)
        path = None if cfg.dyneval_no_cache else self.statistics_path(key)
        cached = load_statistics(path, names, key) if path else None
        if cached is not None:
            logger.info("gradient statistics read from %s", path)
            return cached
        logger.info("gradient statistics on %s: %d streams, segments of %d", split, cfg.dyneval_stats_streams,
                    cfg.dyneval_bptt)
        data = batchify(tokens, cfg.dyneval_stats_streams)  # (N, B)
        windows = fixed_windows(data.size(0), cfg.dyneval_bptt)
        if cfg.dyneval_max_segments > 0:
            windows = windows[:cfg.dyneval_max_segments]
        params = [p for _, p in scorer.adapted_parameters()]
        scorer.eval()
        scorer.reset()
        with rnn_gradients(scorer.model):  # cuDNN differentiates its RNNs in training mode only
            ms, segments = gradient_statistics(lambda src, tgt, state: scorer.model_outputs(src, tgt, state)[1],
                                               params, data, windows, device=params[0].device)
        scorer.reset()
        if path:
            save_statistics(path, names, ms, segments, key)
            logger.info("gradient statistics (%d segments) saved to %s", segments, path)
        return ms, segments
