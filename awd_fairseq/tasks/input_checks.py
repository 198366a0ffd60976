"""Checks of what `awd_language_modeling` is given, each failing (or warning) with one line that names
the flag or file to change; fairseq prints an exception's message as its traceback's last line.
They run before anything is written: at task setup, when a split is loaded, when the first batch
iterator is built, and (precision) when fairseq-train builds the criterion, just before its
Trainer would fail on the same flags far from the cause.
"""
import logging
import os

from ..models.checks import check_precision

logger = logging.getLogger(__name__)


def option(cfg, name, default=None):
    """cfg.name, or `default` where the config lacks it (a checkpoint's task config from before the
    field existed, whose interpolation then has no root to resolve against)."""
    try:
        value = getattr(cfg, name)
    except Exception:  # AttributeError, omegaconf's missing-key and interpolation errors
        return default
    return default if value is None else value


def check_task_config(cfg) -> None:
    """Window length and stream counts: the task's own options."""
    if int(cfg.bptt) < 1:
        raise ValueError(f"--bptt {cfg.bptt} must be at least 1 (the window length in tokens)")
    for name in ("eval_batch_size", "test_batch_size"):
        n = option(cfg, name)
        if n is not None and int(n) < 1:
            raise ValueError(f"--{name.replace('_', '-')} {n} must be at least 1 (the number of streams)")
    extra = option(cfg, "bptt_max_extra")
    if extra is not None and int(extra) < 0:
        raise ValueError(f"--bptt-max-extra {extra} must be >= 0")


def check_split(path: str, split: str) -> None:
    """An empty split binarizes to an empty .bin, which fairseq's reader cannot map."""
    bin_path = os.path.join(path, f"{split}.bin")
    if os.path.isfile(bin_path) and os.path.getsize(bin_path) == 0:
        raise ValueError(
            f"the {split} split is empty ({bin_path} holds no tokens): put text in the raw {split} "
            f"file and rerun fairseq-preprocess, or leave the split out (--valid-subset / --gen-subset)"
        )


def check_valid_batch_size(cfg, max_sentences, train: bool) -> None:
    """fairseq's --batch-size-valid does not decide the validation streams here: --eval-batch-size does.

    fairseq fills --batch-size-valid with --batch-size when it is not given, so only a value other
    than --batch-size is known to be the user's; that one is refused.
    """
    if train:
        return
    batch_size = option(cfg, "batch_size")
    if max_sentences is not None and batch_size is not None and int(max_sentences) != int(batch_size):
        raise ValueError(
            f"--batch-size-valid {max_sentences} is not used by awd_language_modeling: validation reads "
            f"--eval-batch-size streams (now {cfg.eval_batch_size}); pass --eval-batch-size {max_sentences} instead"
        )


def check_training_precision(cfg) -> None:
    """--fp16 / --bf16 / --amp without a GPU (models/checks.py says what fairseq would do)."""
    check_precision(
        fp16=bool(option(cfg, "fp16", False)), bf16=bool(option(cfg, "bf16", False)),
        amp=bool(option(cfg, "amp", False)), cpu=bool(option(cfg, "cpu", False)),
    )
