"""`--optimizer nt_asgd`: Non-monotonically Triggered ASGD (Merity et al. 2017, arXiv 1708.02182,
sec. 3) for fairseq-train: a thin wrapper around the torch optimizer `NTASGD`
(nt_asgd_optimizer.py) and the trigger `NonMonotoneTrigger` (nonmono.py).

Until the switch it is the original's `torch.optim.SGD(params, lr, weight_decay=wdecay)`; from
the switch on every optimized parameter also keeps a uniform running average of its iterates,
the step staying SGD at the current lr. fairseq gives no single object all the switch needs, so
it is driven from three hooks: the lr scheduler (awd_when.py: epochs and the validation loss),
the task (tasks/nt_asgd_hooks.py: the average swapped in for validation and checkpoints, the raw
iterate back before the next step) and this optimizer (the averages, the trigger history and a
pending end-of-epoch loss, all in its state dict so that a resumed run continues exactly).
docs/nt_asgd.md draws who calls what, when, and what works with it (DDP, fp16, --amp).
"""
import logging
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import torch
from fairseq.dataclass import FairseqDataclass
from fairseq.optim import (
    AMPOptimizer,
    FairseqBMUF,
    FairseqOptimizer,
    FP16Optimizer,
    MemoryEfficientFP16Optimizer,
    register_optimizer,
)
from omegaconf import II

from ..fairseq_compat import fp16_model_sync
from .grad_norm import clip_grad_norm, multiply_grads
from .nonmono import NonMonotoneTrigger
from .nt_asgd_optimizer import NTASGD

logger = logging.getLogger(__name__)


@dataclass
class NTASGDConfig(FairseqDataclass):
    wdecay: float = field(default=1.2e-6, metadata={"help": "L2 weight decay added to the gradient"})
    nonmono: int = field(
        default=5,
        metadata={
            "help": "the paper's n: start averaging when a validation loss is worse than the best one "
            "from more than n epochs ago (needs --lr-scheduler awd_when)"
        },
    )
    asgd_from_start: bool = field(
        default=False, metadata={"help": "average from the first update of this run (fine-tuning)"}
    )
    asgd_at_epoch: Optional[int] = field(
        default=None, metadata={"help": "average from the first update of this epoch on, if not triggered before"}
    )
    stop_on_nonmono: bool = field(
        default=False,
        metadata={"help": "stop training when the non-monotone criterion fires while already averaging (fine-tuning)"},
    )
    lr: List[float] = II("optimization.lr")
    best_checkpoint_metric: str = II("checkpoint.best_checkpoint_metric")
    maximize_best_checkpoint_metric: bool = II("checkpoint.maximize_best_checkpoint_metric")
    disable_validation: bool = II("dataset.disable_validation")
    save_dir: str = II("checkpoint.save_dir")
    restore_file: str = II("checkpoint.restore_file")
    finetune_from_model: Optional[str] = II("checkpoint.finetune_from_model")


def check_config(cfg: NTASGDConfig) -> None:
    if cfg.nonmono < 1:
        raise ValueError(f"--nonmono must be >= 1, got {cfg.nonmono}")
    if cfg.asgd_at_epoch is not None and cfg.asgd_at_epoch < 1:
        raise ValueError(f"--asgd-at-epoch must be >= 1, got {cfg.asgd_at_epoch}")
    if cfg.asgd_from_start and cfg.asgd_at_epoch is not None:
        raise ValueError("--asgd-from-start and --asgd-at-epoch exclude each other")
    if cfg.maximize_best_checkpoint_metric:
        raise ValueError("nt_asgd's trigger needs a loss (lower is better): drop --maximize-best-checkpoint-metric")
    if cfg.disable_validation and (cfg.asgd_from_start or cfg.asgd_at_epoch is not None):
        raise ValueError(
            "nt_asgd swaps the averaged weights in for validation, and checkpoints are written right "
            "after it: with --disable-validation they would hold the raw iterate. Validate, or drop "
            "--asgd-from-start / --asgd-at-epoch"
        )
    if cfg.asgd_from_start:
        check_not_overwriting_base(cfg)


def check_not_overwriting_base(cfg: NTASGDConfig) -> None:
    """Fine-tuning must write into its own --save-dir: a base model there would be overwritten (or,
    with --finetune-from-model, fairseq would resume the base run's checkpoint_last.pt instead)."""
    base = cfg.finetune_from_model
    if not base and cfg.restore_file and cfg.restore_file != "checkpoint_last.pt":
        base = cfg.restore_file
    if base and os.path.realpath(os.path.dirname(os.path.abspath(base))) == os.path.realpath(cfg.save_dir):
        raise ValueError(
            f"--asgd-from-start loads {base}, which lies in --save-dir {cfg.save_dir}: fine-tuning would "
            "overwrite the base model's checkpoints. Pass a different --save-dir"
        )


@register_optimizer("nt_asgd", dataclass=NTASGDConfig)
class FairseqNTASGD(FairseqOptimizer):
    def __init__(self, cfg: NTASGDConfig, params):
        super().__init__(cfg)
        self._optimizer, self.trigger = self.build(cfg, params)
        self._pending: Optional[Dict[str, Any]] = None  # {"epoch", "loss"}: validated, not yet seen by end_of_epoch
        self._validating_epoch: Optional[int] = None  # set by begin_validation until its first subset's stats
        self._sync_model: Optional[Callable[[], None]] = None  # FP16Optimizer's fp32 -> fp16 copy
        self._scheduled = False  # set by the awd_when scheduler; without it nothing ever averages
        self._warned_unscheduled = False

    def build(self, cfg, params):
        """The torch optimizer and the trigger that starts its averaging (subclasses: their own)."""
        check_config(cfg)
        return NTASGD(params, **self.optimizer_config), NonMonotoneTrigger(cfg.nonmono)

    @property
    def optimizer_config(self):
        lr = self.cfg.lr[0] if isinstance(self.cfg.lr, Collection) else self.cfg.lr
        return {"lr": lr, "weight_decay": self.cfg.wdecay}

    @property
    def supports_flat_params(self):
        return True

    @property
    def averaging(self) -> bool:
        return self._optimizer.averaging

    def attach_schedule(self, sync_model: Optional[Callable[[], None]]) -> None:
        """Called by the awd_when scheduler; `sync_model` copies the optimized (fp32 master)
        parameters into the model after a swap, None when they are the model's own."""
        self._scheduled = True
        self._sync_model = sync_model

    def multiply_grads(self, c):
        """fairseq's gradient scaling in one multi-tensor op (grad_norm.py)."""
        if not multiply_grads(self.params, c):
            super().multiply_grads(c)

    def clip_grad_norm(self, max_norm, aggregate_norm_fn=None):
        """fairseq's clipping in multi-tensor kernels (grad_norm.py)."""
        return clip_grad_norm(self.params, max_norm, aggregate_norm_fn)

    def step(self, closure=None, scale=1.0, groups=None):
        if not self._scheduled and not self._warned_unscheduled:
            logger.warning("nt_asgd without --lr-scheduler awd_when is plain SGD: nothing will start averaging")
            self._warned_unscheduled = True
        super().step(closure, scale, groups)

    # -- the switch ----------------------------------------------------------------------

    def _start_averaging(self, why: str) -> None:
        if self._optimizer.swapped:
            raise RuntimeError("NT-ASGD cannot start averaging while averaged weights are swapped in")
        self._optimizer.start_averaging()
        logger.info("NT-ASGD: switching to averaged SGD (%s); averaging starts with the next update", why)

    def begin_epoch(self, epoch: int) -> None:
        start = 1 if self.cfg.asgd_from_start else self.cfg.asgd_at_epoch
        if start is not None and epoch >= start and not self.averaging:
            self._start_averaging("--asgd-from-start" if self.cfg.asgd_from_start else f"--asgd-at-epoch {start}")

    def end_of_epoch(self, epoch: int, val_loss: Optional[float]) -> bool:
        """Feed the trigger one epoch's validation loss; True when training should stop.

        `val_loss` is the rounded loss fairseq logged; the exact one kept by `end_validation`
        for this epoch replaces it."""
        pending = self._pending
        if val_loss is not None and pending is not None and pending["epoch"] == epoch:
            val_loss = pending["loss"]
        elif val_loss is None:
            if pending is None or pending["epoch"] != epoch - 1:
                return False  # an epoch without validation: nothing happens
            # fairseq is re-stepping the scheduler after loading a checkpoint written at the end of
            # epoch `epoch - 1`, before that epoch's loss reached the trigger
            epoch, val_loss = pending["epoch"], pending["loss"]
            logger.info("NT-ASGD: resuming: epoch %d's validation loss %s reaches the trigger now", epoch, val_loss)
        self._pending = None
        if not self.trigger.observe(val_loss):  # False for good once it has fired
            return False
        oldest = self.trigger.history[: -self.trigger.nonmono - 1]
        why = (
            f"validation loss {val_loss} at epoch {epoch} is worse than {min(oldest)}, the best of the "
            f"epochs before the last {self.trigger.nonmono} (--nonmono)"
        )
        if not self.averaging:
            self._start_averaging(why)
            return False
        if self.cfg.stop_on_nonmono:
            logger.info("NT-ASGD: %s; stopping (--stop-on-nonmono)", why)
            return True
        logger.info("NT-ASGD: %s; already averaging, nothing to do", why)
        return False

    # -- averaged weights around validation and checkpoints ----------------------------------

    def _swap(self) -> None:
        self._optimizer.swap_averaged()
        if self._sync_model is not None:
            self._sync_model()

    def begin_validation(self, epoch: int) -> None:
        self._validating_epoch = epoch
        if self.averaging and not self._optimizer.swapped:
            self._swap()

    def end_validation(self, stats: Dict[str, Any], agg=None) -> None:
        """Receives the stats fairseq logs for each validated subset and, where given, the
        aggregator they come from; the first subset's --best-checkpoint-metric is the loss
        fairseq will hand the scheduler, kept here unrounded (see `unrounded_metric`)."""
        if self._validating_epoch is None:
            return
        loss = unrounded_metric(stats, agg, self.cfg.best_checkpoint_metric)
        if loss is not None:
            self._pending = {"epoch": int(self._validating_epoch), "loss": float(loss)}
        self._validating_epoch = None

    def begin_train_step(self) -> None:
        self._pending = None
        self._validating_epoch = None
        if self._optimizer.swapped:
            self._swap()

    # -- checkpointed state: python scalars and tensors only (torch.load(weights_only=True)) --

    def _optimized_params(self):
        return [p for group in self._optimizer.param_groups for p in group["params"]]

    def state_dict(self):
        state_dict = self._optimizer.state_dict()
        state_dict["nt_asgd_trigger"] = self.trigger.state_dict()
        state_dict["nt_asgd_pending"] = None if self._pending is None else dict(self._pending)
        if self._sync_model is not None and self._optimizer.swapped:
            # the checkpoint's model holds the average in fp16 only, and fairseq rebuilds its fp32
            # masters from that model on load: keep the fp32 average too
            state_dict["nt_asgd_fp32_average"] = [p.detach().clone() for p in self._optimized_params()]
        return state_dict

    def load_state_dict(self, state_dict, optimizer_overrides=None):
        state_dict = dict(state_dict)
        trigger = state_dict.pop("nt_asgd_trigger", None)
        pending = state_dict.pop("nt_asgd_pending", None)
        fp32_average = state_dict.pop("nt_asgd_fp32_average", None)
        super().load_state_dict(state_dict, optimizer_overrides)
        if fp32_average is not None and self._optimizer.swapped:
            with torch.no_grad():
                for p, average in zip(self._optimized_params(), fp32_average):
                    p.copy_(average)
        if trigger is not None:
            self.trigger.load_state_dict(trigger)
        self._pending = None if pending is None else {"epoch": int(pending["epoch"]), "loss": float(pending["loss"])}


def unrounded_metric(stats: Dict[str, Any], agg, key: str) -> Optional[float]:
    """`stats[key]` before rounding: fairseq's logged stats are the meters' smoothed values,
    rounded as the criterion asked (`round=3` for the loss); the meter itself in `agg` (fairseq's
    MetersDict of the validation pass) holds the exact mean (`avg`), and a derived meter such as
    `ppl` is recomputed from the exact meters (`fn`)."""
    meter = agg.get(key) if agg is not None else None
    if meter is not None and callable(getattr(meter, "fn", None)):
        return float(meter.fn(agg))
    if meter is not None and getattr(meter, "avg", None) is not None:
        return float(meter.avg)
    return stats.get(key)


def nt_asgd_inside(optimizer) -> Optional[FairseqNTASGD]:
    """The FairseqNTASGD that fairseq's trainer optimizer is or wraps (None for other optimizers)."""
    if isinstance(optimizer, FairseqNTASGD):
        inner = optimizer
    elif isinstance(optimizer, (FP16Optimizer, AMPOptimizer)):
        inner = optimizer.fp32_optimizer
    elif isinstance(optimizer, MemoryEfficientFP16Optimizer):
        inner = optimizer.wrapped_optimizer
        if isinstance(inner, FairseqNTASGD):
            raise ValueError("nt_asgd does not support --memory-efficient-fp16 / -bf16: use --fp16, --bf16 or --amp")
    elif isinstance(optimizer, FairseqBMUF):
        if isinstance(optimizer._optimizer, FairseqNTASGD):
            raise ValueError("nt_asgd does not support --use-bmuf (BMUF averages the model its own way)")
        return None
    else:
        return None
    if not isinstance(inner, FairseqNTASGD):
        return None
    if not isinstance(inner.optimizer, NTASGD):
        raise ValueError("nt_asgd does not support --zero-sharding: its averages are per-parameter state")
    return inner


def model_sync_of(optimizer) -> Optional[Callable[[], None]]:
    """After a swap of fp32 master parameters, the copy that brings them into the fp16 model."""
    if isinstance(optimizer, FP16Optimizer):
        return fp16_model_sync(optimizer)
    return None
