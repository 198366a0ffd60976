"""`awd_split_cross_entropy`: cross-entropy through the model's (split) softmax plus the
activation regularisation (AR) and temporal activation regularisation (TAR) of Merity et al. 2017
(arXiv 1708.02182, sec. 4.6), as salesforce/awd-lstm-lm main.py adds them:

    loss = mean CE + alpha * mean(dropped_h_L ** 2) + beta * mean((raw_h_L[t+1] - raw_h_L[t]) ** 2)

where h_L is the last layer's output, after (AR) or before (TAR) its locked dropout. fairseq sums
the losses of all micro-batches and ranks and divides by the summed sample size (tokens), so each
window contributes `sum CE + ntokens * (alpha * AR + beta * TAR)`: with one window this is the
original's loss exactly, and with equal-sized windows on several ranks it is the same mean.

AR and TAR are training-only (as in the original); the logged `loss` / `ppl` are the
cross-entropy alone, which is what selects checkpoints; `ar` and `tar` are logged on their own.
The logged scalars leave the GPU in one non-blocking copy (modules/host_copy.py): the update
never waits for the GPU to log them.
With `--char-level` (the PTB-character and enwik8 recipes) `bpc` replaces `ppl`: fairseq's loss is
already in bits per token, so on character data it is the bits per character.
"""
import math
from dataclasses import dataclass, field

import torch
from fairseq import metrics, utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass

from ..modules.autocast import bf16_autocast
from ..modules.host_copy import host_float, to_host


@dataclass
class AWDSplitCrossEntropyConfig(FairseqDataclass):
    alpha: float = field(default=2.0, metadata={"help": "AR weight on the last layer's dropped output"})
    beta: float = field(default=1.0, metadata={"help": "TAR weight on the last layer's raw output"})
    char_level: bool = field(
        default=False,
        metadata={"help": "the tokens are characters: log bits per character (bpc, = loss) instead of ppl"},
    )
    bf16_autocast: bool = field(
        default=False,
        metadata={"help": "train in bfloat16 autocast (Ampere / Hopper GPUs, or the CPU): fp32 weights, no loss "
                  "scaling; validation stays fp32. fairseq's own --bf16 means a TPU"},
    )


def activation_regularization(dropped_output: torch.Tensor) -> torch.Tensor:
    return dropped_output.float().pow(2).mean()  # float32 (a no-op there): a bf16 / fp16 mean keeps 3 digits


def temporal_activation_regularization(raw_output: torch.Tensor) -> torch.Tensor:
    # raw_output: (B, T, H); differences along time
    return (raw_output[:, 1:] - raw_output[:, :-1]).float().pow(2).mean()


@register_criterion("awd_split_cross_entropy", dataclass=AWDSplitCrossEntropyConfig)
class AWDSplitCrossEntropyCriterion(FairseqCriterion):
    def __init__(self, task, alpha: float, beta: float, char_level: bool = False, bf16_autocast: bool = False):
        super().__init__(task)
        self.alpha, self.beta, self.char_level = alpha, beta, char_level
        self.bf16_autocast = bf16_autocast

    def forward(self, model, sample, reduce=True):
        target = model.get_targets(sample, None)  # (B, T)
        with bf16_autocast(self.bf16_autocast and model.training, target.device):
            return self._forward(model, sample, target)

    def _forward(self, model, sample, target):
        features, extra = model(**sample["net_input"], features_only=True)
        nll = -model.decoder.target_log_probs(features, target).float().sum()
        ntokens = sample["ntokens"]
        loss = nll
        logged = {"loss": nll}  # summable over micro-batches and ranks: AR and TAR times ntokens
        if model.training:
            if self.alpha:
                ar = activation_regularization(extra["dropped_output"])
                loss = torch.add(loss, ar, alpha=ntokens * self.alpha)  # one kernel for + n * alpha * ar
                logged["ar"] = ar.detach() * ntokens
            if self.beta and extra["raw_output"].size(1) > 1:
                tar = temporal_activation_regularization(extra["raw_output"])
                loss = torch.add(loss, tar, alpha=ntokens * self.beta)
                logged["tar"] = tar.detach() * ntokens
        logging_output = {
            **to_host(logged),
            "ntokens": ntokens,
            "nsentences": sample["nsentences"],
            "sample_size": ntokens,
        }
        if self.char_level:  # reduce_metrics is static: the flag travels as a summable count
            logging_output["char_tokens"] = ntokens
        return loss, ntokens, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        def total(key):
            return sum(host_float(log.get(key, 0)) for log in logging_outputs)

        loss, ntokens = total("loss"), total("ntokens")
        metrics.log_scalar("loss", loss / max(ntokens, 1) / math.log(2), ntokens, round=3)
        if total("char_tokens") > 0:
            metrics.log_derived("bpc", lambda meters: meters["loss"].avg)
        else:
            # fairseq's get_perplexity: inf, not OverflowError, for a diverged loss
            metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["loss"].avg, round=3))
        for key in ("ar", "tar"):
            if any(key in log for log in logging_outputs):
                metrics.log_scalar(key, total(key) / max(ntokens, 1), ntokens, round=4)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
