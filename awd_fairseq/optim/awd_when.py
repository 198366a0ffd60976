"""`--lr-scheduler awd_when`: the epoch-level schedule of salesforce/awd-lstm-lm main.py.

* `--when E1 E2 ...`: after each listed epoch the learning rate is divided by 10, for any
  optimizer (the original's SGD/ASGD and Adam recipes). Epoch e trains at
  `lr / 10 ** (number of listed epochs < e)`, set at the start of every epoch, so a resumed run
  picks up the right value whatever the checkpoint holds.
* With `--optimizer nt_asgd` this scheduler is also NT-ASGD's clock: fairseq hands it the
  validation loss after each epoch (after that epoch's checkpoint is written), which it passes to
  the optimizer's non-monotone trigger (see nt_asgd.py), and it tells the optimizer when an epoch
  begins (--asgd-from-start / --asgd-at-epoch).

The learning rate at the ASGD switch: unchanged. The original replaced its SGD optimizer by
`torch.optim.ASGD(lr=args.lr)`, which silently undid every --when division made before the
switch; here the switch only starts averaging, and the divisions of --when stay in force before
and after it, so `lr / 10 ** k` is the lr wherever k of the --when epochs have passed.

--stop-on-nonmono (fine-tuning): when the optimizer asks to stop, the lr is set to
`min(--stop-min-lr, 0)`, fairseq's own way for a scheduler to end training (fairseq-train logs
"stopping training because current learning rate ... is smaller than or equal to minimum
learning rate"). No update is taken at that lr, and a rerun of the same command stops again.
"""
import argparse
import logging
from dataclasses import dataclass, field
from typing import List

from fairseq.dataclass import FairseqDataclass
from fairseq.optim.lr_scheduler import FairseqLRScheduler, register_lr_scheduler
from omegaconf import II

from .nt_asgd import model_sync_of, nt_asgd_inside

logger = logging.getLogger(__name__)


@dataclass
class AWDWhenConfig(FairseqDataclass):
    when: List[int] = field(
        default_factory=list,
        metadata={"help": "divide the learning rate by 10 after these epochs: --when 25 35 (or 25,35)"},
    )
    lr: List[float] = II("optimization.lr")
    stop_min_lr: float = II("optimization.stop_min_lr")


class EpochListAction(argparse.Action):
    """Accepts the original's space-separated `--when 25 35` as well as fairseq's `--when 25,35`."""

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            epochs = [int(x) for value in values for x in str(value).split(",") if x.strip()]
        except ValueError:
            parser.error(f"{option_string} takes epoch numbers, got {' '.join(values)}")
        setattr(namespace, self.dest, epochs)


@register_lr_scheduler("awd_when", dataclass=AWDWhenConfig)
class AWDWhenSchedule(FairseqLRScheduler):
    def __init__(self, cfg: AWDWhenConfig, optimizer):
        super().__init__(cfg, optimizer)
        if len(cfg.lr) != 1:
            raise ValueError(f"awd_when takes a single --lr, got {list(cfg.lr)}")
        if any(epoch < 1 for epoch in cfg.when):
            raise ValueError(f"--when takes epochs >= 1, got {list(cfg.when)}")
        self.nt_asgd = nt_asgd_inside(optimizer)
        if self.nt_asgd is not None:
            self.nt_asgd.attach_schedule(model_sync_of(optimizer))

    @classmethod
    def add_args(cls, parser):
        # added before the dataclass's own --when, which argparse then skips as a duplicate
        parser.add_argument("--when", nargs="*", default=[], action=EpochListAction, metavar="EPOCH")
        super().add_args(parser)

    def lr_for_epoch(self, epoch: int) -> float:
        drops = sum(1 for when in self.cfg.when if when < epoch)
        return self.cfg.lr[0] / 10**drops

    def step_begin_epoch(self, epoch):
        lr = self.lr_for_epoch(epoch)
        if lr != self.optimizer.get_lr() and epoch > 1:
            logger.info("awd_when: learning rate %s for epoch %d (--when %s)", lr, epoch, list(self.cfg.when))
        self.optimizer.set_lr(lr)
        if self.nt_asgd is not None:
            self.nt_asgd.begin_epoch(epoch)
        return self.optimizer.get_lr()

    def step(self, epoch, val_loss=None):
        super().step(epoch, val_loss)
        if self.nt_asgd is not None and self.nt_asgd.end_of_epoch(epoch, val_loss):
            self.optimizer.set_lr(min(self.cfg.stop_min_lr, 0.0))
        return self.optimizer.get_lr()
