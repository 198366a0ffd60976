"""Split softmax against a two-level softmax written out with explicit loops."""

import math

import pytest
import torch
import torch.nn.functional as F

from awd_fairseq.modules.split_softmax import SplitSoftmax, default_cutoffs

H, V, CUTOFFS = 6, 13, [4, 7, 11]  # head [0, 4), clusters [4, 7), [7, 11), [11, 13)


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def _setup(cutoffs=CUTOFFS, n=9):
    module = SplitSoftmax(H, V, cutoffs).double()
    with torch.no_grad():  # zero tombstones would hide ordering mistakes
        for param in module.parameters():
            param.normal_()
    weight = torch.randn(V, H, dtype=torch.double, requires_grad=True)
    bias = torch.randn(V, dtype=torch.double, requires_grad=True)
    hidden = torch.randn(n, H, dtype=torch.double, requires_grad=True)
    return module, hidden, weight, bias


def _logsumexp(values):
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def two_level_reference(hidden, weight, bias, tail_vectors, tail_bias, cutoffs):
    """log p(w | h) for every row and word, one scalar at a time."""
    bounds = [0] + cutoffs + [weight.size(0)]

    def score(h, vec, b):
        return sum(h[j].item() * vec[j].item() for j in range(len(h))) + b.item()

    result = torch.empty(hidden.size(0), weight.size(0), dtype=torch.double)
    for n, h in enumerate(hidden):
        head = [score(h, weight[w], bias[w]) for w in range(bounds[1])]
        head += [score(h, tail_vectors[k], tail_bias[k]) for k in range(len(cutoffs))]
        head_norm = _logsumexp(head)
        for w in range(weight.size(0)):
            k = max(i for i in range(len(bounds) - 1) if bounds[i] <= w)  # cluster of w
            if k == 0:
                result[n, w] = head[w] - head_norm
                continue
            words = [score(h, weight[u], bias[u]) for u in range(bounds[k], bounds[k + 1])]
            tombstone = head[bounds[1] + k - 1] - head_norm
            result[n, w] = tombstone + words[w - bounds[k]] - _logsumexp(words)
    return result


def test_log_probs_matches_two_level_loop_and_normalises():
    module, hidden, weight, bias = _setup()
    log_probs = module.log_probs(hidden, weight, bias)  # (N, V)
    ref = two_level_reference(
        hidden.detach(), weight.detach(), bias.detach(),
        module.tail_vectors.detach(), module.tail_bias.detach(), CUTOFFS,
    )
    torch.testing.assert_close(log_probs, ref)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(hidden.size(0), dtype=torch.double))


@pytest.mark.parametrize("target", [
    [0, 3, 4, 6, 7, 10, 11, 12, 2],  # every cluster, both ends of each
    [1, 1, 12, 0, 12, 3, 2, 2, 0],  # head and the last cluster only
    [5, 5, 5, 4, 6, 6, 4, 5, 5],  # one tail cluster only
])
def test_target_log_probs_equals_gathered_log_probs_with_gradients(target):
    module, hidden, weight, bias = _setup()
    target = torch.tensor(target)
    fast = module.target_log_probs(hidden, weight, bias, target)  # (N,)
    full = module.log_probs(hidden, weight, bias).gather(1, target.unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(fast, full)
    inputs = [hidden, weight, bias, module.tail_vectors, module.tail_bias]
    upstream = torch.randn_like(fast)
    grads_fast = torch.autograd.grad(fast, inputs, upstream)
    grads_full = torch.autograd.grad(full, inputs, upstream)
    for g_fast, g_full in zip(grads_fast, grads_full):
        torch.testing.assert_close(g_fast, g_full)


def test_gradients_reach_tail_vectors_from_zero_init():
    module = SplitSoftmax(H, V, CUTOFFS)
    assert torch.equal(module.tail_vectors, torch.zeros(len(CUTOFFS), H))
    assert torch.equal(module.tail_bias, torch.zeros(len(CUTOFFS)))
    weight, bias, hidden = torch.randn(V, H), torch.randn(V), torch.randn(5, H)
    loss = -module.target_log_probs(hidden, weight, bias, torch.tensor([0, 5, 8, 12, 1])).sum()
    loss.backward()
    assert module.tail_vectors.grad.abs().sum(1).gt(0).all()
    assert module.tail_bias.grad.abs().gt(0).all()


def test_leading_dims_and_no_bias():
    module, hidden, weight, _ = _setup(n=12)
    hidden3 = hidden.view(3, 4, H)
    target = torch.randint(V, (3, 4))
    log_probs = module.log_probs(hidden3, weight, None)  # (3, 4, V)
    assert log_probs.shape == (3, 4, V)
    fast = module.target_log_probs(hidden3, weight, None, target)  # (3, 4)
    torch.testing.assert_close(fast, log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1))


def test_empty_cutoffs_is_full_softmax_without_parameters():
    module, hidden, weight, bias = _setup(cutoffs=[])
    assert list(module.parameters()) == []
    full = F.log_softmax(hidden @ weight.T + bias, dim=-1)
    torch.testing.assert_close(module.log_probs(hidden, weight, bias), full)
    target = torch.randint(V, (hidden.size(0),))
    torch.testing.assert_close(
        module.target_log_probs(hidden, weight, bias, target), full[torch.arange(len(target)), target]
    )


@pytest.mark.parametrize("bad", [[0, 5], [5, 5], [7, 3], [4, V], [4, V + 3], [-1], [2.5]])
def test_invalid_cutoffs_name_the_option(bad):
    with pytest.raises(ValueError, match="--split-softmax-cutoffs"):
        SplitSoftmax(H, V, bad)


def test_default_cutoffs_follow_the_original_thresholds():
    # salesforce/awd-lstm-lm main.py: splits = [2800, 20000, 76000] for ntokens > 75000
    assert default_cutoffs(10000) == []
    assert default_cutoffs(75000) == []
    assert default_cutoffs(75001) == [2800, 20000, 76000]
    assert default_cutoffs(267735) == [2800, 20000, 76000]  # WikiText-103
    assert default_cutoffs(500000) == [2800, 20000, 76000]
    assert default_cutoffs(500001) == [4200, 35000, 180000]
    assert default_cutoffs(793472) == [4200, 35000, 180000]  # One Billion Word
