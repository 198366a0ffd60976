"""The NT-ASGD trigger sees the exact validation loss, not the 3-decimal value fairseq logs and
hands the lr scheduler. Driven through the hooks in the order fairseq_cli/train.py calls them:
task.train_step / optimizer_step, task.begin_valid_epoch, the criterion's reduce_metrics inside a
fresh metrics aggregator, task.post_validate(stats, agg), lr_scheduler.step(epoch, stats[loss]).
Reference: the original's rule (test_nt_asgd.reference_switch_epoch) on the exact losses."""
import math

import pytest
import torch
from fairseq.data import Dictionary
from fairseq.logging import metrics

from awd_fairseq.criterions.awd_split_cross_entropy import AWDSplitCrossEntropyCriterion
from awd_fairseq.models.awd_lstm import AWDLSTMModel, RecurrentLMConfig
from awd_fairseq.optim.awd_when import AWDWhenConfig, AWDWhenSchedule
from awd_fairseq.optim.nt_asgd import FairseqNTASGD
from awd_fairseq.tasks.awd_language_modeling import AWDLanguageModelingConfig, AWDLanguageModelingTask

from test_nt_asgd import reference_switch_epoch
from test_nt_asgd_fairseq import nt_config

NONMONO = 2
# Epoch 4's loss is worse than epoch 1's by 3e-4 bits: both are 3.000 once rounded.
EXACT = [3.0001, 3.5, 3.4, 3.0004, 3.3, 3.2]
TIE_EPOCH = 4


def setup(**nt_overrides):
    dictionary = Dictionary()
    for i in range(20):
        dictionary.add_symbol(f"w{i}")
    task = AWDLanguageModelingTask(AWDLanguageModelingConfig(seed=1, train_subset="train"), dictionary)
    cfg = RecurrentLMConfig(emsize=4, nhid=6, nlayers=1, dropout=0.0, dropouth=0.0, dropouti=0.0, dropoute=0.0,
                            wdrop=0.0)
    model = AWDLSTMModel.build_model(cfg, task)
    criterion = AWDSplitCrossEntropyCriterion(task, alpha=0.0, beta=0.0)
    optimizer = FairseqNTASGD(nt_config(nonmono=NONMONO, **nt_overrides), list(model.parameters()))
    scheduler = AWDWhenSchedule(AWDWhenConfig(when=[], lr=[0.1], stop_min_lr=-1.0), optimizer)
    return task, model, criterion, optimizer, scheduler


def epoch(task, model, criterion, optimizer, scheduler, e, exact_loss):
    """One epoch of fairseq_cli/train.py; returns the lr after the scheduler's step."""
    scheduler.step_begin_epoch(e)
    tokens = torch.randint(4, 24, (2, 5))
    sample = {"net_input": {"src_tokens": tokens}, "target": tokens.roll(-1, 1), "ntokens": 10, "nsentences": 2}
    optimizer.zero_grad()
    task.train_step(sample, model, criterion, optimizer, e - 1)
    task.optimizer_step(optimizer, model, e - 1)
    task.begin_valid_epoch(e, model)
    with metrics.aggregate(new_root=True) as agg:
        # the logging outputs of a validation pass whose mean loss is `exact_loss` bits per token
        logs = [{"loss": exact_loss * math.log(2) * n, "ntokens": n, "nsentences": 1, "sample_size": n}
                for n in (700, 300)]
        criterion.reduce_metrics(logs)
    stats = agg.get_smoothed_values()
    assert stats["loss"] == round(exact_loss, 3)  # what fairseq logs and hands the scheduler
    task.post_validate(model, stats, agg)
    return scheduler.step(e, stats["loss"])


def test_the_losses_tie_only_once_rounded():
    assert reference_switch_epoch(EXACT, NONMONO) == TIE_EPOCH
    assert reference_switch_epoch([round(v, 3) for v in EXACT], NONMONO) != TIE_EPOCH


def test_the_switch_fires_on_the_exact_losses():
    task, model, criterion, optimizer, scheduler = setup()
    for e, loss in enumerate(EXACT, start=1):
        epoch(task, model, criterion, optimizer, scheduler, e, loss)
        assert optimizer.averaging == (e >= TIE_EPOCH), e
    assert optimizer.trigger.history == pytest.approx(EXACT[:TIE_EPOCH], abs=1e-9)


def test_stop_on_nonmono_fires_on_the_exact_losses():
    task, model, criterion, optimizer, scheduler = setup(asgd_from_start=True, stop_on_nonmono=True)
    lrs = [epoch(task, model, criterion, optimizer, scheduler, e, loss) for e, loss in enumerate(EXACT, start=1)]
    assert [e for e, lr in enumerate(lrs, start=1) if lr <= -1.0][:1] == [TIE_EPOCH]
