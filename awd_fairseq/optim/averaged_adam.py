"""`--optimizer averaged_adam`: deepmind/lamb's optimizer for the Mogrifier LSTM (Melis, Kočiský
and Blunsom, arXiv 1909.01792) in fairseq-train: TensorFlow's Adam (beta1 = 0 for lamb's
"rmsprop") with L2 in the gradient, averaging the iterates once the validation loss stops
improving (averaged_adam_optimizer.py, averaging_trigger.py).

It is the NT-ASGD wrapper (nt_asgd.py, whose docstring draws who calls what when) with another
torch optimizer and another trigger, so the averaged weights reach validation and checkpoints
the same way: the task swaps them in for every validation pass, checkpoints written after it hold
them, the raw iterate comes back before the next training step. The trigger is fed by the task's
`post_validate` hook after every validation (each one of lamb's "turns"), not by the scheduler at
epoch ends; `--lr-scheduler awd_when` is still needed (without --when: a constant rate), because
it attaches the optimizer (and, under --fp16, the copy of swapped fp32 weights into the model).

lamb's loss is summed over a window's time steps and averaged over its streams, fairseq's is a
mean over tokens: lamb's gradient is `--bptt` times fairseq's. Adam does not see the scale, but
the L2 penalty, the clipping threshold and epsilon do: the recipes (config/recipe/*_mogrifier.yaml)
divide lamb's `l2_penalty`, `max_grad_norm` and `adam_epsilon` by lamb's `max_time_steps`.
"""
import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from fairseq.dataclass import FairseqDataclass
from fairseq.optim import register_optimizer
from omegaconf import II

from .averaged_adam_optimizer import AveragedAdam
from .averaging_trigger import NoImprovementTrigger
from .awd_adam import adam_config
from .nt_asgd import FairseqNTASGD, unrounded_metric

logger = logging.getLogger(__name__)


@dataclass
class AveragedAdamConfig(FairseqDataclass):
    adam_betas: str = field(
        default="(0.0, 0.999)", metadata={"help": "Adam's betas; lamb's rmsprop is beta1 = 0, beta2 = rmsprop_beta2"}
    )
    adam_eps: float = field(default=1e-8, metadata={"help": "epsilon added to sqrt(v), as TensorFlow's Adam"})
    wdecay: float = field(default=0.0, metadata={"help": "L2 weight decay added to the gradient (lamb's l2_penalty)"})
    trigger_averaging_turns: int = field(
        default=50,
        metadata={"help": "start averaging when this many validations in a row brought no new best loss; -1: never"},
    )
    trigger_averaging_at_the_latest: int = field(
        default=800, metadata={"help": "start averaging at this validation at the latest; -1: no deadline"}
    )
    lr: List[float] = II("optimization.lr")
    best_checkpoint_metric: str = II("checkpoint.best_checkpoint_metric")
    maximize_best_checkpoint_metric: bool = II("checkpoint.maximize_best_checkpoint_metric")


@register_optimizer("averaged_adam", dataclass=AveragedAdamConfig)
class FairseqAveragedAdam(FairseqNTASGD):
    def build(self, cfg, params):
        if cfg.maximize_best_checkpoint_metric:
            raise ValueError(
                "averaged_adam's trigger needs a loss (lower is better): drop --maximize-best-checkpoint-metric"
            )
        trigger = NoImprovementTrigger(cfg.trigger_averaging_turns, cfg.trigger_averaging_at_the_latest)
        return AveragedAdam(params, **self.optimizer_config), trigger

    @property
    def optimizer_config(self):
        return adam_config(self.cfg)

    def step(self, closure=None, scale=1.0, groups=None):
        if not self._scheduled:
            raise ValueError(
                "averaged_adam needs --lr-scheduler awd_when (without --when: a constant learning rate), "
                "which swaps its averaged weights in for validation"
            )
        super().step(closure, scale, groups)

    def _start_averaging(self, why: str) -> None:
        if self._optimizer.swapped:
            raise RuntimeError("averaged_adam cannot start averaging while averaged weights are swapped in")
        self._optimizer.start_averaging()
        logger.info("averaged_adam: averaging the weights from the next update on (%s)", why)

    def begin_epoch(self, epoch: int) -> None:
        """Epochs start nothing here (NT-ASGD's --asgd-at-epoch)."""

    def end_of_epoch(self, epoch: int, val_loss: Optional[float]) -> bool:
        """The trigger has seen every validation already (end_validation)."""
        return False

    def end_validation(self, stats: Dict[str, Any], agg=None) -> None:
        """After each validation pass: its first subset's loss (unrounded) feeds the trigger."""
        if self._validating_epoch is None:
            return
        self._validating_epoch = None
        loss = unrounded_metric(stats, agg, self.cfg.best_checkpoint_metric)
        if loss is None:
            return
        if self.trigger.observe(loss) and not self.averaging:
            self._start_averaging(self.trigger.reason())
