"""The dynamic-evaluation update rule and gradient statistics (modules/dynamic_eval.py) against
slow loops written from the formulas of Krause et al. (2018) and benkrause/dynamic-evaluation."""
import math

import pytest
import torch

from awd_fairseq.modules.dynamic_eval import (
    DynamicEvalUpdate,
    GradientStatistics,
    load_statistics,
    paper_scale,
    save_statistics,
)

SHAPES = [(7, 5), (5,), (3, 4, 2), (1,)]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def make_tensors(seed, scale=1.0, positive=False, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    out = [torch.randn(s, generator=g) * scale for s in SHAPES]
    return [(t.abs() + 1e-3 if positive else t).to(device) for t in out]


def slow_update(params, theta0, ms, grads, lr, lambdah, epsilon):
    """The rule from the paper / dynamiceval.py, parameter by parameter, element by element, in
    float64:  decrate = MS / mean_tensors(mean(MS)) clipped at 1 / lambda;
    theta <- theta + lambda * decrate * (theta0 - theta) - lr * g / (MS + epsilon)."""
    global_mean = sum(float(m.double().mean()) for m in ms) / len(ms)
    out = []
    for p, p0, m, g in zip(params, theta0, ms, grads):
        p, p0, m, g = (t.double().cpu().flatten().tolist() for t in (p, p0, m, g))
        new = []
        for x, x0, mi, gi in zip(p, p0, m, g):
            decrate = min(mi / global_mean, 1.0 / lambdah)
            new.append(x + lambdah * decrate * (x0 - x) - lr * gi / (mi + epsilon))
        out.append(torch.tensor(new, dtype=torch.float64))
    return out


@pytest.mark.parametrize("device", DEVICES)
def test_update_equals_slow_loop_over_segments(device):
    params = make_tensors(0, device=device)
    theta0 = [p.clone() for p in params]
    ms = make_tensors(1, scale=0.1, positive=True, device=device)
    lr, lambdah, epsilon = 3e-3, 0.4, 2e-5
    global_mean = sum(float(m.mean()) for m in ms) / len(ms)
    assert any(float(m.max()) / global_mean > 1 / lambdah for m in ms)  # the clip matters here
    update = DynamicEvalUpdate(params, ms, lr, lambdah, epsilon)
    expected = [p.double().cpu().flatten() for p in params]
    for segment in range(4):
        grads = make_tensors(10 + segment, scale=0.1, device=device)
        update.step(grads)
        expected = slow_update(expected, theta0, ms, grads, lr, lambdah, epsilon)
    for p, p0, e in zip(params, theta0, expected):
        assert not torch.equal(p, p0)
        torch.testing.assert_close(p.double().cpu().flatten(), e, rtol=0, atol=1e-6)


def test_none_gradient_reads_as_zero():
    params = make_tensors(0)
    theta0 = [p.clone() for p in params]
    ms = make_tensors(1, scale=0.1, positive=True)
    update = DynamicEvalUpdate(params, ms, 1e-2, 0.1)
    for p in params:
        p.add_(0.5)  # away from theta0: the decay has work to do
    start = [p.double().flatten() for p in params]
    grads = make_tensors(5)
    grads[1] = None
    update.step(grads)
    zeros = [torch.zeros(s) if g is None else g for s, g in zip(SHAPES, grads)]
    expected = slow_update(start, theta0, ms, zeros, 1e-2, 0.1, 2e-5)
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.double().flatten(), e, rtol=0, atol=1e-6)


def test_zero_rates_leave_weights_exactly_unchanged():
    params = make_tensors(0)
    theta0 = [p.clone() for p in params]
    update = DynamicEvalUpdate(params, make_tensors(1, positive=True), lr=0.0, lambdah=0.0)
    for segment in range(5):
        update.step(make_tensors(20 + segment, scale=100.0))
    assert all(torch.equal(p, p0) for p, p0 in zip(params, theta0))


def test_reset_and_configure():
    params = make_tensors(0)
    theta0 = [p.clone() for p in params]
    update = DynamicEvalUpdate(params, make_tensors(1, positive=True), lr=1e-2, lambdah=0.01)
    update.step(make_tensors(3))
    assert not torch.equal(params[0], theta0[0])
    update.reset()
    assert all(torch.equal(p, p0) for p, p0 in zip(params, theta0))
    update.configure(0.0, 0.0)
    update.step(make_tensors(4))
    assert all(torch.equal(p, p0) for p, p0 in zip(params, theta0))
    with pytest.raises(ValueError, match="eta >= 0"):
        update.configure(-1.0, 0.1)


def test_gradient_statistics_equal_direct_computation():
    """MS = sqrt(mean over segments of g^2), from the gradients of each segment's mean loss."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    params = list(model.parameters())
    segments = [(torch.randn(5, 4), torch.randint(3, (5,))) for _ in range(6)]
    stats = GradientStatistics(params)
    per_segment = []
    for x, y in segments:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, params)
        stats.add(grads)
        per_segment.append(grads)
    for i, ms in enumerate(stats.ms()):
        direct = torch.stack([g[i] for g in per_segment]).pow(2).mean(0).sqrt()
        torch.testing.assert_close(ms, direct, rtol=1e-6, atol=0)
    assert stats.segments == len(segments)


def test_statistics_cache_reads_back_with_weights_only(tmp_path):
    ms = make_tensors(1, positive=True)
    names = [f"p{i}" for i in range(len(ms))]
    path = str(tmp_path / "stats.pt")
    save_statistics(path, names, ms, 12, key="ckpt=abc|split=train|bptt=5")
    state = torch.load(path, weights_only=True)  # nothing but tensors, strings, lists and ints
    assert state["segments"] == 12
    loaded, segments = load_statistics(path, names, key="ckpt=abc|split=train|bptt=5")
    assert all(torch.equal(a, b) for a, b in zip(loaded, ms)) and segments == 12
    assert load_statistics(path, names, key="ckpt=abc|split=train|bptt=10") is None
    assert load_statistics(path, names[::-1], key="ckpt=abc|split=train|bptt=5") is None
    assert load_statistics(str(tmp_path / "missing.pt"), names, key="k") is None


def test_mismatched_statistics_are_refused():
    with pytest.raises(ValueError, match="do not match"):
        DynamicEvalUpdate(make_tensors(0), make_tensors(1)[:-1], 1e-3, 1e-3)
    with pytest.raises(ValueError, match="all zero"):
        DynamicEvalUpdate(make_tensors(0), [torch.zeros(s) for s in SHAPES], 1e-3, 1e-3)


def reference_update_old_scale(params, theta0, segment_grads, grads, lr, lamb, epsilon, ms_from_mean=False):
    """One update of benkrause/dynamic-evaluation before --oldhyper existed (and zihangdai/mos
    dynamiceval.py; with `ms_from_mean`, its --ms), element by element in float64:
        MS = sqrt(sum over segments of g^2)      (--ms: sqrt(mean))
        gsum = sum over parameters of mean(MS)   (not averaged)
        decrate = min(MS / gsum, 1 / lamb)
        theta += lamb * decrate * (theta0 - theta) - lr * g / (MS + epsilon)"""
    segments = len(segment_grads)
    ms = []
    for i in range(len(params)):
        sq = [sum(float(g[i].double().flatten()[k]) ** 2 for g in segment_grads) for k in range(params[i].numel())]
        ms.append([math.sqrt(x / segments if ms_from_mean else x) for x in sq])
    gsum = sum(sum(m) / len(m) for m in ms)
    out = []
    for p, p0, m, g in zip(params, theta0, ms, grads):
        p, p0, g = (t.double().flatten().tolist() for t in (p, p0, g))
        out.append(torch.tensor([x + lamb * min(mi / gsum, 1 / lamb) * (x0 - x) - lr * gi / (mi + epsilon)
                                 for x, x0, mi, gi in zip(p, p0, m, g)], dtype=torch.float64))
    return out


@pytest.mark.parametrize("scale", ["oldhyper", "mos_ms"])
def test_reference_scales_convert_to_the_same_update(scale):
    """Rates in the old code's scale, converted (paper_scale), give the old code's update."""
    params = make_tensors(0)
    theta0 = [p.clone() for p in params]
    for p in params:  # away from theta0, so the decay term counts
        p.add_(0.05)
    segment_grads = [make_tensors(20 + k, scale=0.1) for k in range(9)]
    stats = GradientStatistics(params)
    for g in segment_grads:
        stats.add(g)
    grads = make_tensors(99, scale=0.1)
    lr, lamb, epsilon = 2e-3, 0.05, 1e-3  # zihangdai/mos / the paper's AWD-LSTM values, old scale
    expected = reference_update_old_scale(params, theta0, segment_grads, grads, lr, lamb, epsilon,
                                          ms_from_mean=scale == "mos_ms")
    update = DynamicEvalUpdate(params, stats.ms(), *paper_scale(scale, lr, lamb, epsilon, 9, len(params)))
    update.theta0 = theta0
    update.step(grads)
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.double().flatten(), e, rtol=0, atol=1e-6)
    assert paper_scale("paper", lr, lamb, epsilon, 9, 4) == (lr, lamb, epsilon)
