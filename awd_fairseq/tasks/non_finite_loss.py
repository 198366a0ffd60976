"""A NaN / inf training loss named with its window and update, without reading the loss every update.

Checking each loss for finiteness is a device-to-host read per window: on a GPU the host would wait
for the forward and backward passes of every update. fairseq already notices a non-finite update
(its gradient norm is not finite: "gradients are Nan/Inf") and then replays the update's windows
under its NaN detector, with the same update number, before it stops. So the loss is only read when
a window is trained a second time at the same update number: in that replay (and in an `--amp`
retry of an overflowing update, which is rare). The log line comes during the replay, before
fairseq's own error and the NaN detector's module names.
"""
import logging
from typing import Optional, Set, Tuple

import torch

logger = logging.getLogger(__name__)


class NonFiniteLossReport:
    def __init__(self) -> None:
        self.update: Optional[int] = None
        self.windows: Set[Tuple[int, int]] = set()  # windows trained at `update`

    def after_train_step(self, loss, sample: dict, update_num: int) -> None:
        """Called after each window's forward and backward (task.train_step)."""
        window = sample.get("window")  # host ints (bptt_dataset.py): reading them costs nothing
        if window is None or not torch.is_tensor(loss):
            return
        if update_num != self.update:
            self.update, self.windows = update_num, {window}
            return
        if window not in self.windows:  # the next micro-batch of an --update-freq group
            self.windows.add(window)
            return
        if bool(torch.isfinite(loss.detach()).all()):  # a replay: the one read
            return
        logger.error(
            "non-finite training loss %s at update %d: window [%d, %d) of the training streams "
            "(rows of the batchified split, every stream of this process)", float(loss.detach().sum()),
            update_num + 1, *window,
        )
