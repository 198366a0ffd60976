"""NT-ASGD optimizer and trigger against independent references: a literal
transcription of salesforce/awd-lstm-lm's switch rule, torch.optim.SGD,
torch.optim.ASGD, the SGD formula and the mean of recorded iterates."""

import io
import random

import pytest
import torch

from awd_fairseq.optim.nonmono import NonMonotoneTrigger
from awd_fairseq.optim.nt_asgd_optimizer import NTASGD
from helpers import saved_and_loaded

WD = 1.2e-6


def reference_switch_epoch(losses, nonmono):
    """main.py's loop, verbatim in spirit: check first, then append."""
    best_val_loss = []
    for epoch, val_loss in enumerate(losses, start=1):
        if len(best_val_loss) > nonmono and val_loss > min(best_val_loss[:-nonmono]):
            return epoch
        best_val_loss.append(val_loss)
    return None


def switch_epoch(trigger, losses):
    fired = [epoch for epoch, loss in enumerate(losses, start=1) if trigger.observe(loss)]
    assert len(fired) <= 1
    return fired[0] if fired else None


# ---------------------------------------------------------------- trigger


def test_earliest_epoch_is_nonmono_plus_two():
    increasing = [float(i) for i in range(1, 20)]  # every epoch worse than epoch 1
    for n in (1, 2, 5):
        assert switch_epoch(NonMonotoneTrigger(nonmono=n), increasing) == n + 2
    assert reference_switch_epoch(increasing, 5) == 7


def test_compares_against_losses_older_than_the_last_n():
    # epoch 7 is worse than epochs 2..6 but not than epoch 1: no switch;
    # epoch 8 (2.5) is worse than min(epochs 1..2) = 2.0: switch.
    losses = [3.0, 2.0, 1.0, 1.0, 1.0, 1.0, 2.9, 2.5]
    assert reference_switch_epoch(losses, 5) == 8
    assert switch_epoch(NonMonotoneTrigger(5), losses) == 8


def test_strict_comparison_and_monotone_sequences_never_fire():
    assert switch_epoch(NonMonotoneTrigger(5), [1.0] * 30) is None
    assert switch_epoch(NonMonotoneTrigger(5), [10.0 - 0.1 * i for i in range(50)]) is None
    assert switch_epoch(NonMonotoneTrigger(2), [1.0, 3.0, 3.0, 1.0, 1.0 + 1e-9]) == 5


def test_matches_reference_on_random_sequences():
    rng = random.Random(0)
    for _ in range(500):
        n = rng.randint(1, 6)
        losses = [rng.uniform(0.0, 1.0) - 0.02 * i for i in range(rng.randint(1, 25))]
        assert switch_epoch(NonMonotoneTrigger(n), losses) == reference_switch_epoch(losses, n)


def test_stays_triggered_and_fires_once():
    trigger = NonMonotoneTrigger(1)
    assert [trigger.observe(x) for x in [1.0, 2.0, 3.0, 4.0, 0.5, 9.0]] == [False, False, True] + [False] * 3
    assert trigger.triggered
    assert trigger.history == [1.0, 2.0, 3.0]  # like best_val_loss, frozen after the switch


def test_nonmono_must_be_positive():
    with pytest.raises(ValueError):
        NonMonotoneTrigger(0)


def test_trigger_state_round_trip():
    losses = [5.0, 4.0, 3.0, 3.5, 3.4, 3.3, 3.2, 3.6, 3.1]
    whole = NonMonotoneTrigger(3)
    expected = [whole.observe(x) for x in losses]
    first = NonMonotoneTrigger(3)
    got = [first.observe(x) for x in losses[:4]]
    state = first.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    resumed = NonMonotoneTrigger(3)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    got += [resumed.observe(x) for x in losses[4:]]
    assert got == expected and any(expected)
    assert resumed.state_dict() == whole.state_dict()


# -------------------------------------------------------------- optimizer


def make_params(seed=0):
    g = torch.Generator().manual_seed(seed)
    model = [torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)]
    extra = [torch.randn(2, generator=g, dtype=torch.float64)]  # stands for the criterion's parameters
    return [p.requires_grad_() for p in model], [p.requires_grad_() for p in extra]


def compute_grads(params, step, skip=()):
    """A loss that varies with the step; parameters in ``skip`` get no grad."""
    g = torch.Generator().manual_seed(1000 + step)
    loss = 0.0
    for i, p in enumerate(params):
        p.grad = None
        if i not in skip:
            target = torch.randn(p.shape, generator=g, dtype=p.dtype)
            loss = loss + ((p - target) ** 2).sum() + torch.sin(3 * p).sum()
    loss.backward()


def groups(model, extra):
    """Two param groups, the second with its own hyperparameters."""
    return [{"params": model}, {"params": extra, "lr": 0.2, "weight_decay": 0.1}]


def test_sgd_phase_equals_torch_sgd_bitwise():
    model_a, extra_a = make_params()
    model_b, extra_b = make_params()
    ours = NTASGD(groups(model_a, extra_a), lr=0.3, weight_decay=WD)
    ref = torch.optim.SGD(groups(model_b, extra_b), lr=0.3, weight_decay=WD)
    for step in range(10):
        for params, opt in ((model_a + extra_a, ours), (model_b + extra_b, ref)):
            compute_grads(params, step)
            opt.step()
        assert all(torch.equal(a, b) for a, b in zip(model_a + extra_a, model_b + extra_b))
    assert not ours.averaging and ours.num_averaged == 0


def test_average_is_mean_of_iterates_in_every_group_and_without_grad():
    model, extra = make_params()
    params = model + extra
    opt = NTASGD(groups(model, extra), lr=0.1, weight_decay=WD)
    for step in range(3):
        compute_grads(params, step)
        opt.step()
    opt.start_averaging()
    assert torch.equal(opt.averaged_params()[0], model[0])  # no step yet: p_0
    iterates = []
    for step in range(3, 12):
        before = [p.detach().clone() for p in params]
        skip = {1} if step % 2 else {1, 2}  # param 1 never has a grad, param 2 half the time
        compute_grads(params, step, skip=skip)
        opt.step()
        for i in skip:
            assert torch.equal(params[i], before[i])
        iterates.append([p.detach().clone() for p in params])
    assert opt.num_averaged == 9
    for i, average in enumerate(opt.averaged_params()):
        expected = torch.stack([it[i] for it in iterates]).mean(0)
        torch.testing.assert_close(average, expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(opt.averaged_params()[1], params[1])


def test_asgd_step_uses_current_lr_and_averages_from_first_step():
    """Ours: p - lr * (g + wd * p) with the lr set just before the step, and
    ax = mean(p_1..p_n). torch ASGD(t0=0, lambd=0), as the original used it,
    applies each lr one step late and leaves p_1 out of its average."""
    w = make_params()[0][0]
    w_ref = w.detach().clone().requires_grad_()
    ours = NTASGD([w], lr=0.3, weight_decay=WD)
    ours.start_averaging()
    torch_asgd = torch.optim.ASGD([w_ref], lr=0.3, t0=0, lambd=0.0, weight_decay=WD)
    lrs = [0.3, 0.3, 0.05, 0.3, 0.3, 0.3]
    lagged = [0.3] + lrs[:-1]
    iterates, ref_iterates = [], []
    for step, (lr, lr_ref) in enumerate(zip(lrs, lagged)):
        compute_grads([w], step)
        compute_grads([w_ref], step)
        expected = w.detach() - lr * (w.grad + WD * w.detach())
        expected_ref = w_ref.detach() - lr_ref * (w_ref.grad + WD * w_ref.detach())
        ours.param_groups[0]["lr"] = lr
        torch_asgd.param_groups[0]["lr"] = lr
        ours.step()
        torch_asgd.step()
        torch.testing.assert_close(w.detach(), expected, rtol=1e-15, atol=1e-15)
        torch.testing.assert_close(w_ref.detach(), expected_ref)  # torch keeps eta in float32
        iterates.append(w.detach().clone())
        ref_iterates.append(w_ref.detach().clone())
    torch.testing.assert_close(ours.averaged_params()[0], torch.stack(iterates).mean(0))
    torch.testing.assert_close(torch_asgd.state[w_ref]["ax"], torch.stack(ref_iterates[1:]).mean(0))


def test_swap_and_back_is_exact():
    model, extra = make_params()
    params = model + extra
    opt = NTASGD(groups(model, extra), lr=0.2)
    with opt.use_averaged():  # before averaging: a no-op
        pass
    with pytest.raises(RuntimeError):
        opt.swap_averaged()
    opt.start_averaging()
    for step in range(5):
        compute_grads(params, step)
        opt.step()
    raw = [p.detach().clone() for p in params]
    averages = opt.averaged_params()
    with opt.use_averaged():
        assert all(torch.equal(p, a) for p, a in zip(params, averages))
        assert opt.averaged_params()[0].equal(averages[0])
        with pytest.raises(RuntimeError):
            opt.step()
    assert all(torch.equal(p, r) for p, r in zip(params, raw))
    opt.swap_averaged()
    opt.swap_averaged()
    assert all(torch.equal(p, r) for p, r in zip(params, raw))



@pytest.mark.parametrize("interrupt_at", [2, 4, 7])  # mid-SGD, at the switch, mid-ASGD
def test_resume_from_state_dict_matches_uninterrupted(interrupt_at):
    switch_at, total = 4, 10

    def run(opt, params, steps):
        for step in steps:
            if step == switch_at:
                opt.start_averaging()
            compute_grads(params, step, skip={2} if step % 3 == 0 else ())
            opt.step()

    model, extra = make_params()
    whole = NTASGD(groups(model, extra), lr=0.1, weight_decay=WD)
    run(whole, model + extra, range(total))

    model_a, extra_a = make_params()
    first = NTASGD(groups(model_a, extra_a), lr=0.1, weight_decay=WD)
    run(first, model_a + extra_a, range(interrupt_at))
    saved_params = saved_and_loaded([p.detach().clone() for p in model_a + extra_a])
    saved_opt = saved_and_loaded(first.state_dict())

    model_b, extra_b = make_params(seed=1)  # different init, overwritten by the checkpoint
    with torch.no_grad():
        for p, v in zip(model_b + extra_b, saved_params):
            p.copy_(v)
    resumed = NTASGD(groups(model_b, extra_b), lr=9.0)
    resumed.load_state_dict(saved_opt)
    run(resumed, model_b + extra_b, range(interrupt_at, total))

    assert all(torch.isfinite(p).all() for p in model + extra)
    assert resumed.averaging and resumed.num_averaged == whole.num_averaged == total - switch_at
    assert all(torch.equal(a, b) for a, b in zip(model + extra, model_b + extra_b))
    assert all(torch.equal(a, b) for a, b in zip(whole.averaged_params(), resumed.averaged_params()))


def test_state_dict_is_plain():
    model, extra = make_params()
    opt = NTASGD(groups(model, extra), lr=0.1, weight_decay=WD)
    opt.start_averaging()
    compute_grads(model + extra, 0)
    opt.step()
    loaded = saved_and_loaded(opt.state_dict())
    assert loaded["nt_asgd"] == {"averaging": True, "num_averaged": 1, "swapped": False}
    assert set(loaded["state"]) == set(range(len(model + extra)))
    assert all(set(s) == {"ax"} for s in loaded["state"].values())
    with opt.use_averaged():  # a checkpoint taken while swapped says so
        assert saved_and_loaded(opt.state_dict())["nt_asgd"]["swapped"] is True
