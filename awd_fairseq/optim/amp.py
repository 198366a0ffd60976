"""fairseq's `--amp` divides the gradients by the loss scale twice; `unscale_once` makes it once.

What fairseq 0.12's `AMPOptimizer` (fairseq/optim/amp_optimizer.py) does in an update:

    backward:        (loss * S).backward()                      grads are S * g
    multiply_grads:  grads *= 1 / sample_size                   (linear: still scaled)
    clip_grad_norm:  scaler.unscale_(self.optimizer)            grads /= S: the torch optimizer
                     clip to --clip-norm
    step:            scaler.step(self.fp32_optimizer)           a DIFFERENT object: the fairseq wrapper

`torch.amp.GradScaler` remembers which optimizers it has unscaled by `id()`. `self.optimizer` is the
torch optimizer inside the fairseq wrapper `self.fp32_optimizer`, so `step` finds the wrapper not yet
unscaled and unscales its gradients (the same tensors, through the wrapper's `param_groups`) a
second time: every update is taken with gradients S times too small. fairseq's AMP starts at S =
--fp16-init-scale = 128 and doubles S every 2000 overflow-free updates, so with SGD (NT-ASGD) the
effective learning rate is lr / 128 at first and shrinks further as S grows. Adam, nearly invariant
to the scale of its gradients, hides it; the AWD recipes' SGD at lr 30 trains visibly worse.

`unscale_once(optimizer)` gives fairseq's AMPOptimizer instance a clipping that unscales through the
wrapper, the object `step` passes to the scaler, so that the scaler's record matches and `step` does
not unscale again. Everything else (overflow detection, skipped steps, the scale's growth, the
minimum-scale error) stays fairseq's. With no overflow the update is then the fp32 update: the
scale is a power of two, so scaling and unscaling are exact.
"""
import logging

import torch
from fairseq.optim import AMPOptimizer

logger = logging.getLogger(__name__)


class AMPOptimizerUnscalingOnce(AMPOptimizer):
    """fairseq's AMPOptimizer, unscaling through `fp32_optimizer` (see the module docstring)."""

    def clip_grad_norm(self, max_norm, aggregate_norm_fn=None):
        self.scaler.unscale_(self.fp32_optimizer)  # the object scaler.step() will be given
        grad_norm = self.fp32_optimizer.clip_grad_norm(max_norm, aggregate_norm_fn)
        if not torch.isfinite(grad_norm).all():  # fairseq's own check and message
            new_loss_scale = self.next_loss_scale
            if new_loss_scale <= self.min_loss_scale:
                raise FloatingPointError(
                    f"AMP: Minimum loss scale reached ({self.min_loss_scale}). Your loss is probably exploding. "
                    f"Try restarting training or use fp32. {new_loss_scale}"
                )
            logger.info("AMP: overflow detected, setting scale to %s", new_loss_scale)
        return grad_norm


def unscale_once(optimizer) -> None:
    """Called with the trainer's optimizer before its first clipping (task.train_step); a no-op for
    every optimizer but fairseq's AMPOptimizer, whose instance gets the clipping above."""
    if type(optimizer) is AMPOptimizer:
        optimizer.__class__ = AMPOptimizerUnscalingOnce
        logger.info("--amp: the gradients are unscaled once per update (fairseq's AMPOptimizer unscales twice)")
