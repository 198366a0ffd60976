"""`awd_cache_pointer`: fairseq-eval-lm with the continuous cache pointer (Grave, Joulin and
Usunier, arXiv 1612.04426), as salesforce/awd-lstm-lm pointer.py evaluates it:

    fairseq-eval-lm data-bin/ptb --user-dir awd_fairseq --task awd_cache_pointer --path ckpt.pt \\
        --pointer-window 500 --pointer-theta 1.0 --pointer-lambda 0.1

    p(w) = lambda * p_cache(w) + (1 - lambda) * p_model(w)
    p_cache(w) = sum over the last `window` positions i whose next word is w of softmax_i(theta * h_t . h_i)

with `h` the model's final features: the last recurrent layer's output for awd_lstm / qrnn (their
dropout is off in evaluation), the decoder's output features for fairseq's transformer_lm.
One stream; the cache spans windows, so the result does not depend on `--bptt` (see
modules/cache_pointer.py) unless `--pointer-skip-chunk-start` reproduces the original's rule.
Positions count from the stream's leading `</s>` (tasks/token_stream.py); the cache is used at
position t iff t > window, as the original counts.
"""
from dataclasses import dataclass, field

from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import register_task

from ..modules.cache_pointer import CachePointer
from .stream_scoring import StreamScoringConfig, StreamScoringTask


@dataclass
class PointerOptions(FairseqDataclass):
    """The cache pointer's own options (pointer.py's flags), shared by every task that uses it."""

    pointer_window: int = field(default=500, metadata={"help": "positions the cache attends over (pointer.py --window)"})
    pointer_theta: float = field(default=1.0, metadata={"help": "inverse temperature of the cache softmax (--theta)"})
    pointer_lambda: float = field(default=0.1, metadata={"help": "weight of the cache in the mixture (--lambdasm)"})
    pointer_skip_chunk_start: bool = field(
        default=False,
        metadata={"help": "as pointer.py: no cache at the first token of each window once warm (depends on the "
                  "window length)"},
    )


def build_pointer(cfg: PointerOptions) -> CachePointer:
    return CachePointer(window=cfg.pointer_window, theta=cfg.pointer_theta, lambdah=cfg.pointer_lambda,
                        skip_chunk_start=cfg.pointer_skip_chunk_start)


@dataclass
class CachePointerLMConfig(PointerOptions, StreamScoringConfig):
    bptt: int = field(default=70, metadata={"help": "tokens read per window (the result depends on it only with "
                                                    "--pointer-skip-chunk-start; pointer.py --bptt)"})
    pointer_full_distribution: bool = field(
        default=False,
        metadata={"help": "give fairseq's scorer the whole (T, V) mixture instead of the target's probability only "
                  "(exact everywhere, O(V) more per token)"},
    )


@register_task("awd_cache_pointer", dataclass=CachePointerLMConfig)
class CachePointerLMTask(StreamScoringTask):
    name = "awd_cache_pointer"

    @classmethod
    def setup_task(cls, cfg: CachePointerLMConfig, **kwargs):
        if cfg.bptt < 1:
            raise ValueError(f"--bptt {cfg.bptt} must be at least 1 (the window length in tokens)")
        return super().setup_task(cfg, **kwargs)

    def components(self) -> dict:
        return {"pointer": build_pointer(self.cfg), "full_distribution": self.cfg.pointer_full_distribution}

    def window_length(self) -> int:
        return self.cfg.bptt
