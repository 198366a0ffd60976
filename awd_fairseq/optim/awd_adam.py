"""`awd_adam`: Adam with the weight decay added to the gradient (L2, "coupled"), as
salesforce/awd-lstm-lm main.py builds its `--optimizer adam`:
`torch.optim.Adam(params, lr=args.lr, weight_decay=args.wdecay)`.

fairseq's own `--optimizer adam` decays the weights directly (decoupled, as AdamW): with Adam's
per-parameter scaling the two are different updates. The character-level and enwik8 recipes use
this optimizer so that their `--wdecay 1.2e-6` means what it meant in the original. The state is
torch's Adam state (tensors only), so checkpoints load with torch's weights_only loader.
"""
import ast
from dataclasses import dataclass, field
from typing import List

import torch
from fairseq.dataclass import FairseqDataclass
from fairseq.optim import FairseqOptimizer, register_optimizer
from omegaconf import II

from .grad_norm import clip_grad_norm, multiply_grads


@dataclass
class AWDAdamConfig(FairseqDataclass):
    adam_betas: str = field(default="(0.9, 0.999)", metadata={"help": "Adam's betas (torch.optim.Adam's default)"})
    adam_eps: float = field(default=1e-8, metadata={"help": "Adam's epsilon (torch.optim.Adam's default)"})
    wdecay: float = field(
        default=1.2e-6, metadata={"help": "L2 weight decay added to the gradient before Adam's moments (main.py --wdecay)"}
    )
    lr: List[float] = II("optimization.lr")


def adam_config(cfg) -> dict:
    """torch's Adam arguments from the plugin's Adam options (awd_adam, averaged_adam)."""
    return {
        "lr": cfg.lr[0],
        "betas": parse_betas(cfg.adam_betas),
        "eps": cfg.adam_eps,
        "weight_decay": cfg.wdecay,  # torch's Adam adds it to the gradient: L2, as the original
    }


def parse_betas(spec) -> tuple:
    betas = ast.literal_eval(spec) if isinstance(spec, str) else tuple(spec)
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"--adam-betas must be two numbers in [0, 1), e.g. '(0.9, 0.999)'; got {spec!r}")
    return tuple(float(b) for b in betas)


@register_optimizer("awd_adam", dataclass=AWDAdamConfig)
class FairseqAWDAdam(FairseqOptimizer):
    def __init__(self, cfg: AWDAdamConfig, params):
        super().__init__(cfg)
        self._optimizer = torch.optim.Adam(params, **self.optimizer_config)

    @property
    def optimizer_config(self):
        return adam_config(self.cfg)

    @property
    def supports_flat_params(self):
        return True

    def multiply_grads(self, c):
        """fairseq's gradient scaling in one multi-tensor op (grad_norm.py)."""
        if not multiply_grads(self.params, c):
            super().multiply_grads(c)

    def clip_grad_norm(self, max_norm, aggregate_norm_fn=None):
        """fairseq's clipping in multi-tensor kernels (grad_norm.py)."""
        return clip_grad_norm(self.params, max_norm, aggregate_norm_fn)
