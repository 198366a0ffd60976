"""`averaged_adam` (lamb's optimizer for the Mogrifier LSTM) against references written out here:
TensorFlow's Adam update step by step (tf.train.AdamOptimizer's documented formula), lamb's
averaging trigger as training.py and monitoring.py compute it, the mean of recorded iterates, and
an uninterrupted run for a resumed one; the fairseq wrapper driven in fairseq-train's order."""
import math
import random

import pytest
import torch

from awd_fairseq.optim.averaged_adam import AveragedAdamConfig, FairseqAveragedAdam
from awd_fairseq.optim.averaged_adam_optimizer import AveragedAdam
from awd_fairseq.optim.averaging_trigger import NoImprovementTrigger
from awd_fairseq.optim.awd_when import AWDWhenConfig, AWDWhenSchedule
from awd_fairseq.optim.nt_asgd import nt_asgd_inside
from helpers import saved_and_loaded


def grads_at(step, shapes, seed=0):
    g = torch.Generator().manual_seed(seed * 1000 + step)
    return [torch.randn(s, generator=g, dtype=torch.float64) * 1e-3 for s in shapes]


def tf_adam_reference(start, steps, lr, beta1, beta2, eps, l2):
    """tf.train.AdamOptimizer on the gradient of loss + l2 * sum(w^2) / 2 (lamb's l2_loss)."""
    w = [p.clone() for p in start]
    m = [torch.zeros_like(p) for p in w]
    v = [torch.zeros_like(p) for p in w]
    for t in range(1, steps + 1):
        lr_t = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)
        for k, grad in enumerate(grads_at(t, [p.shape for p in w])):
            grad = grad + l2 * w[k]
            m[k] = beta1 * m[k] + (1 - beta1) * grad
            v[k] = beta2 * v[k] + (1 - beta2) * grad * grad
            w[k] = w[k] - lr_t * m[k] / (v[k].sqrt() + eps)
    return w


def run_ours(start, steps, **kwargs):
    params = [torch.nn.Parameter(p.clone()) for p in start]
    opt = AveragedAdam(params, **kwargs)
    for t in range(1, steps + 1):
        for p, grad in zip(params, grads_at(t, [p.shape for p in params])):
            p.grad = grad
        opt.step()
    return [p.detach() for p in params]


START = [torch.randn(3, 4, dtype=torch.float64), torch.randn(5, dtype=torch.float64)]


@pytest.mark.parametrize("beta1", [0.0, 0.9])
def test_step_is_tensorflow_adam(beta1):
    # eps of the order of sqrt(v): TF's placement (added to sqrt(v)) and torch's (to sqrt(v_hat)) differ
    kwargs = dict(lr=0.01, betas=(beta1, 0.99), eps=1e-4, weight_decay=0.3)
    ours = run_ours(START, 7, **kwargs)
    ref = tf_adam_reference(START, 7, 0.01, beta1, 0.99, 1e-4, 0.3)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    params = [torch.nn.Parameter(p.clone()) for p in START]
    torch_adam = torch.optim.Adam(params, lr=0.01, betas=(beta1, 0.99), eps=1e-4, weight_decay=0.3)
    for t in range(1, 8):
        for p, grad in zip(params, grads_at(t, [p.shape for p in params])):
            p.grad = grad
        torch_adam.step()
    assert not torch.allclose(params[0].detach(), ref[0], rtol=1e-6, atol=0)  # the eps placement shows


def test_average_is_the_mean_of_the_iterates_after_the_switch():
    params = [torch.nn.Parameter(p.clone()) for p in START]
    opt = AveragedAdam(params, lr=0.01)
    iterates = []
    for t in range(1, 9):
        if t == 4:
            opt.start_averaging()
        for p, grad in zip(params, grads_at(t, [p.shape for p in params])):
            p.grad = grad
        opt.step()
        if t >= 4:
            iterates.append([p.detach().clone() for p in params])
    for k, average in enumerate(opt.averaged_params()):
        torch.testing.assert_close(average, torch.stack([it[k] for it in iterates]).mean(0))


def lamb_rule(losses, turns, at_the_latest):
    """The turn (1-based validation) at which lamb switches averaging on, or None: after turn t's
    evaluation, best_xe_turn is the first turn holding the minimum so far (`xe < best_xe`)."""
    if turns < 0:
        return None
    best, best_turn = None, None
    for t, loss in enumerate(losses, start=1):
        if best is None or loss < best:
            best, best_turn = loss, t
        if (t > 0 and t - best_turn >= turns) or (at_the_latest >= 0 and t >= at_the_latest):
            return t
    return None


@pytest.mark.parametrize("seed", range(30))
def test_trigger_fires_where_lamb_switches(seed):
    rng = random.Random(seed)
    losses = [5.0 - 0.1 * t + rng.choice([0.0, 0.3, 0.6]) * (t > rng.randint(3, 20)) for t in range(40)]
    losses = [round(x, 1) for x in losses]  # ties: an equal loss is not a new best
    turns, latest = rng.randint(1, 6), rng.choice([-1, 25, 35])
    trigger = NoImprovementTrigger(turns, latest)
    fired = [t for t, loss in enumerate(losses, start=1) if trigger.observe(loss)]
    expected = lamb_rule(losses, turns, latest)
    assert fired == ([] if expected is None else [expected])


def test_trigger_examples():
    trigger = NoImprovementTrigger(2, -1)
    assert [trigger.observe(x) for x in (3.0, 2.0, 2.5, 1.5, 1.5, 1.0, 1.0, 1.0)] == [False] * 7 + [True]
    never = NoImprovementTrigger(-1, 1)
    assert not any(never.observe(x) for x in (3.0, 4.0, 5.0))


def config(**overrides):
    values = dict(adam_betas="(0.0, 0.999)", adam_eps=1e-8, wdecay=0.0, trigger_averaging_turns=2,
                  trigger_averaging_at_the_latest=-1, lr=[0.01], best_checkpoint_metric="loss",
                  maximize_best_checkpoint_metric=False)
    values.update(overrides)
    return AveragedAdamConfig(**values)



class Run:
    """The optimizer, the awd_when scheduler and the task's hooks, called in fairseq-train's order."""

    def __init__(self):
        self.params = [torch.nn.Parameter(p.clone()) for p in START]
        self.optimizer = FairseqAveragedAdam(config(), self.params)
        self.scheduler = AWDWhenSchedule(AWDWhenConfig(when=[], lr=[0.01], stop_min_lr=-1.0), self.optimizer)
        self.hooks = nt_asgd_inside(self.optimizer)
        self.t, self.iterates, self.validated = 0, [], []

    def train(self, updates):
        for _ in range(updates):
            self.hooks.begin_train_step()
            self.t += 1
            for p, grad in zip(self.params, grads_at(self.t, [p.shape for p in self.params])):
                p.grad = grad.clone()
            self.optimizer.step()
            if self.hooks.averaging:
                self.iterates.append([p.detach().clone() for p in self.params])

    def validate(self, loss):
        self.hooks.begin_validation(1)
        self.validated.append([p.detach().clone() for p in self.params])
        self.hooks.end_validation({"loss": loss})


def test_validations_feed_the_trigger_and_see_the_average():
    run = Run()
    for loss in (3.0, 2.0, 2.5, 2.4):  # no new best at the 3rd and 4th: averaging after the 4th
        run.train(3)
        run.validate(loss)
        assert run.hooks.averaging == (loss == 2.4)
    run.train(3)
    run.validate(2.3)
    mean = [torch.stack([it[k] for it in run.iterates]).mean(0) for k in range(2)]
    assert len(run.iterates) == 3
    for seen, expected in zip(run.validated[-1], mean):
        torch.testing.assert_close(seen, expected)
    run.train(1)  # the raw iterate is back before the step
    assert len(run.iterates) == 4 and not torch.equal(run.params[0].detach(), run.validated[-1][0])


def test_resume_continues_as_one_run():
    whole, first = Run(), Run()
    for run in (whole, first):
        for loss in (3.0, 2.0, 2.5, 2.4):
            run.train(3)
            run.validate(loss)
    state = saved_and_loaded({"model": [p.detach().clone() for p in first.params], "optimizer": first.optimizer.state_dict()})
    resumed = Run()
    with torch.no_grad():
        for p, saved in zip(resumed.params, state["model"]):
            p.copy_(saved)
    resumed.optimizer.load_state_dict(state["optimizer"])
    resumed.t = first.t
    for run in (whole, resumed):
        run.train(4)
        run.validate(2.2)
    for a, b in zip(whole.validated[-1] + list(whole.params), resumed.validated[-1] + list(resumed.params)):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=0)


def test_refuses_to_run_without_the_scheduler():
    params = [torch.nn.Parameter(p.clone()) for p in START]
    optimizer = FairseqAveragedAdam(config(), params)
    for p in params:
        p.grad = torch.ones_like(p)
    with pytest.raises(ValueError, match="--lr-scheduler awd_when"):
        optimizer.step()
