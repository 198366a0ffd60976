"""The learning rate of an update scaled by its window's length, as salesforce/awd-lstm-lm
main.py `train()` does (`optimizer.param_groups[0]['lr'] = lr2 * seq_len / args.bptt`): a
training policy of the task, computed from the window's shape.

The scale is applied to the optimizer's lr around fairseq's optimizer step rather than to the
loss, so that it stays exact under `--clip-norm` (clipping a scaled gradient is not scaling a
clipped one) and under weight decay. With `--update-freq k` an update holds k windows and the
scale is their mean.
"""
import contextlib
from typing import Iterator, List


class WindowLrScale:
    def __init__(self, bptt: int) -> None:
        self.bptt = bptt
        self.scales: List[float] = []  # seq_len / bptt of each window of the current update

    def add(self, sample: dict) -> None:
        """Called for each window trained on; its length is the inputs' second dimension (B, T)."""
        self.scales.append(sample["net_input"]["src_tokens"].size(1) / self.bptt)

    @contextlib.contextmanager
    def applied(self, optimizer) -> Iterator[None]:
        """Around one optimizer step: lr * mean scale of the windows since the last step."""
        scale = sum(self.scales) / len(self.scales) if self.scales else 1.0
        self.scales = []
        if scale == 1.0:
            yield
            return
        lr = optimizer.get_lr()
        optimizer.set_lr(lr * scale)
        try:
            yield
        finally:
            optimizer.set_lr(lr)
