"""The multi-tensor NT-ASGD step and averaging, and the multi-tensor gradient clipping, against the
per-parameter formulas written out here and against fairseq's own clipping (utils.clip_grad_norm_)."""
import copy

import pytest
import torch
from fairseq import utils as fairseq_utils

from awd_fairseq.optim.grad_norm import clip_grad_norm
from awd_fairseq.optim.nt_asgd_optimizer import NTASGD


def params_of_several_shapes(seed=0, dtypes=(torch.float32,) * 4):
    g = torch.Generator().manual_seed(seed)
    shapes = [(7, 5), (5,), (3, 4, 2), (1,)]
    return [torch.nn.Parameter(torch.randn(*s, generator=g).to(d)) for s, d in zip(shapes, dtypes)]


def reference_run(params, grads_per_step, lrs, wd, average_from):
    """p <- p - lr (g + wd p) for each p with a gradient, then ax <- ax + (p - ax) / n for EVERY p
    (lerp, one tensor at a time): the per-parameter loop the optimizer replaces."""
    values = [p.detach().clone() for p in params]
    averages, n = None, 0
    for step, (grads, lr) in enumerate(zip(grads_per_step, lrs)):
        if step == average_from:
            averages, n = [v.clone() for v in values], 0
        for v, g in zip(values, grads):
            if g is not None:
                v.add_(g.add(v, alpha=wd), alpha=-lr)
        if averages is not None:
            n += 1
            for a, v in zip(averages, values):
                a.lerp_(v, 1.0 / n)
    return values, averages


@pytest.mark.parametrize("dtypes", [(torch.float32,) * 4, (torch.float32, torch.float64, torch.float32, torch.float64)])
def test_step_and_average_equal_the_per_parameter_loop_bit_for_bit(dtypes):
    params = params_of_several_shapes(dtypes=dtypes)
    g = torch.Generator().manual_seed(1)
    steps = 9
    grads_per_step = [[None if (i == 1 and s % 3 == 0) else torch.randn(p.shape, generator=g).to(p.dtype)
                       for i, p in enumerate(params)] for s in range(steps)]  # param 1 misses some gradients
    lrs = [30.0 * (0.5 + 0.1 * s) for s in range(steps)]  # the per-window lr scale changes every step
    wd, average_from = 1.2e-6, 4
    expected_values, expected_averages = reference_run(params, grads_per_step, lrs, wd, average_from)

    optimizer = NTASGD(params, lr=30.0, weight_decay=wd)
    for step, (grads, lr) in enumerate(zip(grads_per_step, lrs)):
        if step == average_from:
            optimizer.start_averaging()
        for p, grad in zip(params, grads):
            p.grad = grad
        optimizer.param_groups[0]["lr"] = lr
        optimizer.step()
    for p, expected in zip(params, expected_values):
        assert torch.equal(p.detach(), expected)
    for average, expected in zip(optimizer.averaged_params(), expected_averages):
        assert torch.equal(average, expected)


def test_average_is_the_mean_of_the_iterates():
    params = params_of_several_shapes(2)
    optimizer = NTASGD(params, lr=0.1)
    optimizer.start_averaging()
    iterates = []
    for s in range(6):
        for p in params:
            p.grad = torch.full_like(p, float(s + 1))
        optimizer.step()
        iterates.append([p.detach().clone() for p in params])
    for i, average in enumerate(optimizer.averaged_params()):
        mean = torch.stack([it[i] for it in iterates]).mean(0)
        assert torch.allclose(average, mean, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("max_norm", [0.0, 0.25, 1e6])
@pytest.mark.parametrize("count", [1, 4])
def test_clipping_equals_fairseqs_bit_for_bit(max_norm, count):
    ours = params_of_several_shapes(3)[:count]
    g = torch.Generator().manual_seed(4)
    for p in ours:
        p.grad = torch.randn(p.shape, generator=g) * 3
    theirs = copy.deepcopy(ours)
    for p, q in zip(ours, theirs):
        q.grad = p.grad.clone()
    norm = clip_grad_norm(ours, max_norm)
    expected = fairseq_utils.clip_grad_norm_(theirs, max_norm)
    assert torch.equal(norm, expected)
    written_out = torch.sqrt(sum((q.grad.double() ** 2).sum() for q in theirs)) if max_norm == 0 else None
    if written_out is not None:
        assert abs(norm.item() - written_out.item()) < 1e-5 * written_out.item()
    for p, q in zip(ours, theirs):
        assert torch.equal(p.grad, q.grad)


def test_clipping_leaves_expert_parameters_out_of_the_norm_but_scales_them():
    params = params_of_several_shapes(5)
    for p in params:
        p.grad = torch.ones_like(p)
    params[0].expert = True
    expected_norm = sum(p.numel() for p in params[1:]) ** 0.5
    norm = clip_grad_norm(params, 1.0)
    assert abs(norm.item() - expected_norm) < 1e-5
    assert torch.allclose(params[0].grad, torch.full_like(params[0], 1.0 / (expected_norm + 1e-6)))


def test_clipping_half_precision_gradients_takes_the_norm_in_float32():
    p = torch.nn.Parameter(torch.zeros(4, dtype=torch.float16))
    p.grad = torch.full((4,), 60000.0, dtype=torch.float16)  # the fp16 norm (120000) would overflow
    norm = clip_grad_norm([p], 0.0)
    assert norm.dtype == torch.float32 and abs(norm.item() - 120000.0) < 1.0


def test_multiply_grads_equals_fairseqs_and_leaves_mixed_dtypes_to_it():
    from fairseq.optim import FairseqOptimizer

    from awd_fairseq.optim.grad_norm import multiply_grads

    ours = params_of_several_shapes(6)
    for p in ours:
        p.grad = torch.randn(p.shape)
    theirs = copy.deepcopy(ours)
    for p, q in zip(ours, theirs):
        q.grad = p.grad.clone()
    fairseq_optimizer = FairseqOptimizer(None)
    fairseq_optimizer._optimizer = torch.optim.SGD(theirs, lr=1.0)
    assert multiply_grads(ours, 1.0 / 1400)
    fairseq_optimizer.multiply_grads(1.0 / 1400)
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(ours, theirs))
    mixed = params_of_several_shapes(7, dtypes=(torch.float32, torch.float64, torch.float32, torch.float32))
    for p in mixed:
        p.grad = torch.ones_like(p)
    assert not multiply_grads(mixed, 2.0) and all(torch.equal(p.grad, torch.ones_like(p)) for p in mixed)
