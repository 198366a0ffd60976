"""The task's side of NT-ASGD (optim/nt_asgd.py, whose docstring draws who calls what when):
validation, and the checkpoints fairseq writes right after it, see the averaged weights; training
steps see the raw iterate. A no-op for every other optimizer.

fairseq hands the task's `begin_valid_epoch` / `post_validate` no optimizer, so the NT-ASGD
optimizer found at the last training step is kept here.
"""
from typing import Any, Dict, Optional

from ..optim.nt_asgd import FairseqNTASGD, nt_asgd_inside


class NTASGDTaskHooks:
    def __init__(self) -> None:
        self.optimizer: Optional[FairseqNTASGD] = None

    def before_train_step(self, optimizer) -> None:
        """Before every training forward: the raw iterate goes back in if the average is."""
        self.optimizer = nt_asgd_inside(optimizer)
        if self.optimizer is not None:
            self.optimizer.begin_train_step()

    def begin_validation(self, epoch: int) -> None:
        if self.optimizer is not None:
            self.optimizer.begin_validation(epoch)

    def end_validation(self, stats: Dict[str, Any], agg=None) -> None:
        """`stats`: the rounded values fairseq logs; `agg`: the meters they come from (exact)."""
        if self.optimizer is not None:
            self.optimizer.end_validation(stats, agg)
