"""`--optimizer nt_asgd`: fairseq wrapper around `NTASGD` (nt_asgd_optimizer.py), the
non-monotonically triggered averaged SGD of Merity et al. 2017 (arXiv 1708.02182, sec. 3).

Until the switch it is plain SGD with L2 weight decay, i.e. the original's
`torch.optim.SGD(params, lr=args.lr, weight_decay=args.wdecay)`.
"""
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import List

from fairseq.dataclass import FairseqDataclass
from fairseq.optim import FairseqOptimizer, register_optimizer
from omegaconf import II

from .nt_asgd_optimizer import NTASGD


@dataclass
class NTASGDConfig(FairseqDataclass):
    wdecay: float = field(default=1.2e-6, metadata={"help": "L2 weight decay added to the gradient"})
    lr: List[float] = II("optimization.lr")


@register_optimizer("nt_asgd", dataclass=NTASGDConfig)
class FairseqNTASGD(FairseqOptimizer):
    def __init__(self, cfg, params):
        super().__init__(cfg)
        self._optimizer = NTASGD(params, **self.optimizer_config)

    @property
    def optimizer_config(self):
        lr = self.cfg.lr[0] if isinstance(self.cfg.lr, Collection) else self.cfg.lr
        return {"lr": lr, "weight_decay": self.cfg.wdecay}

    @property
    def supports_flat_params(self):
        return True
