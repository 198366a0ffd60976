"""The registered `nt_asgd` optimizer and `awd_when` scheduler, driven by hand in the order
fairseq_cli/train.py calls them (no fairseq-train process): references are the original's rule
(reference_switch_epoch), the mean of recorded iterates, `lr / 10 ** k`, and an uninterrupted run."""

import argparse

import pytest
import torch
from omegaconf import OmegaConf

from awd_fairseq.optim.awd_when import AWDWhenConfig, AWDWhenSchedule
from awd_fairseq.optim.nt_asgd import FairseqNTASGD, NTASGDConfig, nt_asgd_inside

from test_nt_asgd import compute_grads, make_params, reference_switch_epoch
from helpers import saved_and_loaded

UPDATES_PER_EPOCH = 3


def nt_config(**overrides):
    values = dict(
        wdecay=1.2e-6, nonmono=2, asgd_from_start=False, asgd_at_epoch=None, stop_on_nonmono=False, lr=[0.1],
        best_checkpoint_metric="loss", maximize_best_checkpoint_metric=False, disable_validation=False,
        save_dir="/tmp/does-not-matter", restore_file="checkpoint_last.pt", finetune_from_model=None,
    )
    values.update(overrides)
    return NTASGDConfig(**values)



class Run:
    """One training process: parameters, optimizer and scheduler wired as fairseq's trainer does,
    with the task's hooks called where awd_language_modeling calls them."""

    def __init__(self, when=(), seed=0, **overrides):
        model, extra = make_params(seed)
        self.params = model + extra  # `extra` stands for the criterion's parameters
        self.optimizer = FairseqNTASGD(nt_config(**overrides), self.params)
        self.scheduler = AWDWhenSchedule(
            AWDWhenConfig(when=list(when), lr=[0.1], stop_min_lr=-1.0), self.optimizer
        )
        self.nt = nt_asgd_inside(self.optimizer)
        self.num_updates = 0
        self.lrs, self.raw_iterates, self.validated = {}, [], {}
        self.stopped_after = None

    def train_epoch(self, epoch):
        self.scheduler.step_begin_epoch(epoch)
        self.lrs[epoch] = self.optimizer.get_lr()
        for _ in range(UPDATES_PER_EPOCH):
            self.nt.begin_train_step()
            compute_grads(self.params, self.num_updates, skip={2} if self.num_updates % 2 else ())
            self.optimizer.step()
            self.num_updates += 1
            if self.nt.averaging:
                self.raw_iterates.append([p.detach().clone() for p in self.params])

    def validate(self, epoch, loss):
        self.nt.begin_validation(epoch)
        self.validated[epoch] = [p.detach().clone() for p in self.params]
        self.nt.end_validation({"loss": loss, "num_updates": self.num_updates})

    def checkpoint(self):
        """What trainer.state_dict() keeps of these objects, through torch.save/load."""
        return saved_and_loaded(
            {
                "model": [p.detach().clone() for p in self.params],
                "optimizer": self.optimizer.state_dict(),
                "lr_scheduler": self.scheduler.state_dict(),
            }
        )

    def resume(self, state, epoch_itr_epoch):
        """trainer.load_checkpoint + checkpoint_utils.load_checkpoint: load, then lr_step twice."""
        with torch.no_grad():
            for p, saved in zip(self.params, state["model"]):
                p.copy_(saved)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["lr_scheduler"])
        self.scheduler.step(epoch_itr_epoch)
        self.scheduler.step(epoch_itr_epoch)

    def epochs(self, losses, first=1, last=None, stop_at_checkpoint=None):
        """Epochs first..last of fairseq_cli/train.py: train, validate, save, scheduler step."""
        last = last or len(losses)
        for epoch in range(first, last + 1):
            self.train_epoch(epoch)
            self.validate(epoch, losses[epoch - 1])
            if epoch == stop_at_checkpoint:
                return self.checkpoint()
            if self.scheduler.step(epoch, losses[epoch - 1]) <= -1.0:
                self.stopped_after = epoch
                return None
        return None


LOSSES = [5.0, 4.0, 3.0, 3.5, 3.4, 3.3, 3.6, 3.2, 3.1]
SWITCH = 6  # with n = 2: 3.3 > min(5.0, 4.0, 3.0)


def test_switch_epoch_matches_the_original_rule_and_is_logged(caplog):
    assert reference_switch_epoch(LOSSES, 2) == SWITCH
    run = Run()
    with caplog.at_level("INFO"):
        run.epochs(LOSSES)
    assert run.nt.trigger.triggered
    assert len(run.raw_iterates) == (len(LOSSES) - SWITCH) * UPDATES_PER_EPOCH  # from epoch 7's first update
    assert "switching to averaged SGD" in caplog.text and f"at epoch {SWITCH} " in caplog.text


def test_validation_sees_the_mean_of_the_iterates_and_training_the_raw_iterate():
    run = Run()
    run.epochs(LOSSES)
    mean = [torch.stack([it[i] for it in run.raw_iterates]).mean(0) for i in range(len(run.params))]
    for seen, expected in zip(run.validated[len(LOSSES)], mean):
        torch.testing.assert_close(seen, expected, rtol=1e-12, atol=1e-12)
    run.nt.begin_train_step()
    assert all(torch.equal(p, raw) for p, raw in zip(run.params, run.raw_iterates[-1]))
    # up to the switch validation saw the raw iterate itself
    assert not torch.equal(run.validated[SWITCH][0], run.validated[len(LOSSES)][0])


def test_when_divides_by_ten_and_the_switch_leaves_the_lr_alone():
    run = Run(when=[2, 7])
    run.epochs(LOSSES)
    expected = {e: 0.1 / 10 ** sum(w < e for w in (2, 7)) for e in run.lrs}
    assert run.lrs == pytest.approx(expected, rel=1e-15)
    assert run.lrs[SWITCH + 1] == run.lrs[SWITCH]  # the first averaged epoch keeps the lr
    assert run.lrs[8] == pytest.approx(run.lrs[7] / 10, rel=1e-15)


@pytest.mark.parametrize("interrupt_after", [3, SWITCH, SWITCH + 1, 8])  # before, at (pending loss), after
def test_resume_at_an_epoch_boundary_equals_the_uninterrupted_run(interrupt_after):
    whole = Run(when=[4])
    whole.epochs(LOSSES)
    whole_final = whole.checkpoint()

    first = Run(when=[4])
    state = first.epochs(LOSSES, stop_at_checkpoint=interrupt_after)
    resumed = Run(when=[4], seed=1)  # other initial values, overwritten by the checkpoint
    resumed.resume(state, epoch_itr_epoch=interrupt_after + 1)
    resumed.num_updates = first.num_updates
    resumed.epochs(LOSSES, first=interrupt_after + 1)
    final = resumed.checkpoint()

    assert all(torch.equal(a, b) for a, b in zip(whole_final["model"], final["model"]))
    assert whole_final["optimizer"]["nt_asgd_trigger"] == final["optimizer"]["nt_asgd_trigger"]
    for a, b in zip(whole_final["optimizer"]["state"].values(), final["optimizer"]["state"].values()):
        assert torch.equal(a["ax"], b["ax"])
    assert whole_final["optimizer"]["nt_asgd"] == final["optimizer"]["nt_asgd"]
    assert whole.lrs == {**first.lrs, **resumed.lrs}


def test_a_mid_epoch_validation_is_not_replayed_as_an_epoch_loss():
    run = Run()
    run.epochs(LOSSES, last=SWITCH - 1)
    run.train_epoch(SWITCH)
    run.validate(SWITCH, 100.0)  # mid-epoch (--validate-interval-updates), then a checkpoint
    state = run.checkpoint()
    resumed = Run()
    resumed.resume(state, epoch_itr_epoch=SWITCH)
    assert resumed.nt.trigger.history == LOSSES[: SWITCH - 1] and not resumed.nt.averaging
    resumed.nt.begin_train_step()
    resumed.scheduler.step(SWITCH, None)  # the epoch ends without validation: nothing happens
    assert resumed.nt.trigger.history == LOSSES[: SWITCH - 1] and not resumed.nt.averaging


def test_epochs_without_validation_change_nothing():
    run = Run()
    run.train_epoch(1)
    run.scheduler.step(1, None)
    assert run.nt.trigger.history == [] and run.nt.trigger.num_observed == 0


@pytest.mark.parametrize("option", [{"asgd_from_start": True}, {"asgd_at_epoch": 3}])
def test_asgd_from_start_and_at_epoch(option):
    run = Run(nonmono=50, **option)
    run.epochs(LOSSES, last=4)
    start = 1 if "asgd_from_start" in option else 3
    assert len(run.raw_iterates) == (4 - start + 1) * UPDATES_PER_EPOCH


def test_stop_on_nonmono_while_averaging_sets_fairseqs_stop_lr(caplog):
    run = Run(asgd_from_start=True, stop_on_nonmono=True)
    with caplog.at_level("INFO"):
        run.epochs(LOSSES)
    assert run.stopped_after == SWITCH and run.optimizer.get_lr() == -1.0
    assert "stopping (--stop-on-nonmono)" in caplog.text
    # without --stop-on-nonmono the trigger only starts averaging, and training goes on
    run = Run(stop_on_nonmono=True)
    run.epochs(LOSSES)
    assert run.stopped_after is None and run.nt.averaging


def test_stop_is_replayed_on_resume():
    first = Run(asgd_from_start=True, stop_on_nonmono=True)
    state = first.epochs(LOSSES, stop_at_checkpoint=SWITCH)
    resumed = Run(asgd_from_start=True, stop_on_nonmono=True)
    resumed.resume(state, epoch_itr_epoch=SWITCH + 1)
    assert resumed.optimizer.get_lr() == -1.0  # fairseq-train stops before training another epoch


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="disable-validation"):
        Run(asgd_from_start=True, disable_validation=True)
    with pytest.raises(ValueError, match="maximize"):
        Run(maximize_best_checkpoint_metric=True)
    with pytest.raises(ValueError, match="exclude"):
        Run(asgd_from_start=True, asgd_at_epoch=2)
    base = tmp_path / "base"
    base.mkdir()
    with pytest.raises(ValueError, match="overwrite the base model"):
        Run(asgd_from_start=True, save_dir=str(base), finetune_from_model=str(base / "checkpoint_best.pt"))
    with pytest.raises(ValueError, match="overwrite the base model"):
        Run(asgd_from_start=True, save_dir=str(base), restore_file=str(base / "checkpoint_best.pt"))
    Run(asgd_from_start=True, save_dir=str(tmp_path / "ft"), finetune_from_model=str(base / "checkpoint_best.pt"))


def test_when_accepts_the_originals_spaces_and_fairseqs_commas():
    parser = argparse.ArgumentParser()
    AWDWhenSchedule.add_args(parser)
    assert parser.parse_args(["--when", "25", "35"]).when == [25, 35]
    assert parser.parse_args(["--when", "25,35"]).when == [25, 35]
    assert parser.parse_args([]).when == []


def test_state_dict_loads_with_weights_only():
    run = Run()
    run.epochs(LOSSES, last=SWITCH + 1)
    run.train_epoch(SWITCH + 2)
    run.validate(SWITCH + 2, LOSSES[SWITCH + 1])
    loaded = saved_and_loaded(run.optimizer.state_dict())
    assert loaded["nt_asgd_trigger"]["history"] == LOSSES[:SWITCH]
    assert loaded["nt_asgd"]["swapped"] is True
    assert loaded["nt_asgd_pending"] == {"epoch": SWITCH + 2, "loss": LOSSES[SWITCH + 1]}


# ------------------------------------------------------------------- mixed precision


def fp16_optimizer(params16):
    from fairseq.optim import FP16Optimizer

    cfg = OmegaConf.create(
        {
            "optimizer": {"_name": "nt_asgd"},
            "common": {
                "fp16_no_flatten_grads": True, "bf16": False, "fp16_scale_window": 128, "fp16_init_scale": 4,
                "fp16_scale_tolerance": 0.0, "threshold_loss_scale": None, "min_loss_scale": 1e-4,
            },
            "optimization": {"update_freq": [1]},
        }
    )
    fp32_params = FP16Optimizer.build_fp32_params(cfg.optimizer, params16, flatten=False)
    inner = FairseqNTASGD(nt_config(asgd_from_start=True), fp32_params)
    return FP16Optimizer(cfg, params16, inner, fp32_params), fp32_params


def test_fp16_swap_reaches_the_fp16_model():
    params16 = [p.detach().half().requires_grad_() for p in make_params()[0]]
    optimizer, fp32_params = fp16_optimizer(params16)
    scheduler = AWDWhenSchedule(AWDWhenConfig(when=[], lr=[0.1], stop_min_lr=-1.0), optimizer)
    nt = nt_asgd_inside(optimizer)
    scheduler.step_begin_epoch(1)
    raw32 = []
    for step in range(4):
        nt.begin_train_step()
        optimizer.zero_grad()
        g = torch.Generator().manual_seed(step)
        loss = sum(((p.float() - torch.randn(p.shape, generator=g)) ** 2).sum() for p in params16)
        optimizer.backward(loss)
        optimizer.step()
        raw32.append([p.detach().clone() for p in fp32_params])
    mean32 = [torch.stack([it[i] for it in raw32]).mean(0) for i in range(len(params16))]
    nt.begin_validation(1)
    for p16, p32, m in zip(params16, fp32_params, mean32):
        torch.testing.assert_close(p32.detach(), m, rtol=1e-6, atol=1e-6)
        assert torch.equal(p16.detach(), p32.detach().half())  # the forward pass sees the average
    state = saved_and_loaded(optimizer.state_dict())  # a checkpoint written after this validation
    nt.begin_train_step()
    for p16, raw in zip(params16, raw32[-1]):
        assert torch.equal(p16.detach(), raw.half())

    # resume: fairseq loads the fp16 model (the average), rebuilds fp32 masters from it, loads the state
    loaded16 = [p.detach().clone().requires_grad_() for p in params16]
    with torch.no_grad():
        for p, m in zip(loaded16, mean32):
            p.copy_(m.half())
    resumed, resumed32 = fp16_optimizer(loaded16)
    AWDWhenSchedule(AWDWhenConfig(when=[], lr=[0.1], stop_min_lr=-1.0), resumed)
    resumed.load_state_dict(state)
    assert all(torch.equal(p.detach(), m) for p, m in zip(resumed32, nt.optimizer.averaged_params()))  # fp32, not fp16
    nt_asgd_inside(resumed).begin_train_step()
    assert all(torch.equal(p.detach(), raw) for p, raw in zip(resumed32, raw32[-1]))


def test_memory_efficient_fp16_is_refused():
    from fairseq.optim import MemoryEfficientFP16Optimizer

    inner = FairseqNTASGD(nt_config(), make_params()[0])
    with pytest.raises(ValueError, match="Unsupported optimizer"):  # fairseq's own check
        MemoryEfficientFP16Optimizer(OmegaConf.create({"optimizer": None}), inner.params, inner)
    wrapper = MemoryEfficientFP16Optimizer.__new__(MemoryEfficientFP16Optimizer)
    wrapper.wrapped_optimizer = inner  # as with allow_unsupported=True (fully sharded + fp16)
    with pytest.raises(ValueError, match="memory-efficient"):
        nt_asgd_inside(wrapper)
