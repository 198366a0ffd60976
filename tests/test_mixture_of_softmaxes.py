"""Mixture of softmaxes against the formula of Yang et al. (arXiv 1711.03953) written out row by row."""

import math

import pytest
import torch
import torch.nn.functional as F

from awd_fairseq.modules.mixture_of_softmaxes import MixtureOfSoftmaxes

H, E, K, V = 5, 4, 3, 11


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def _setup(n_experts=K, n=7, scale=1.0, dropout=0.0, **kwargs):
    module = MixtureOfSoftmaxes(H, E, n_experts, dropout_latent=dropout, **kwargs).double()
    with torch.no_grad():  # a nonzero bias everywhere, so a dropped bias term shows
        for param in module.parameters():
            param.normal_()
    weight = (scale * torch.randn(V, E, dtype=torch.double)).requires_grad_()
    bias = torch.randn(V, dtype=torch.double, requires_grad=True)
    features = torch.randn(n, H, dtype=torch.double, requires_grad=True)
    return module, features, weight, bias


def _logsumexp(values):
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def formula_log_probs(module, features, weight, bias):
    """log sum_k pi_k softmax(W latent_k + b)_w, one scalar at a time (log space, exact)."""
    w_l, b_l = module.latent.weight.detach(), module.latent.bias.detach()
    w_p = module.prior.weight.detach()
    weight, bias = weight.detach(), bias.detach()
    n_experts = module.n_experts
    out = torch.empty(features.size(0), weight.size(0), dtype=torch.double)
    for n, h in enumerate(features.detach().tolist()):
        latent = [math.tanh(sum(w_l[j, i].item() * h[i] for i in range(H)) + b_l[j].item()) for j in range(n_experts * E)]
        prior_logits = [sum(w_p[k, i].item() * h[i] for i in range(H)) for k in range(n_experts)]
        log_prior = [p - _logsumexp(prior_logits) for p in prior_logits]
        per_expert = []
        for k in range(n_experts):
            z = latent[k * E : (k + 1) * E]
            logits = [sum(weight[w, e].item() * z[e] for e in range(E)) + bias[w].item() for w in range(weight.size(0))]
            per_expert.append([x - _logsumexp(logits) for x in logits])
        for w in range(weight.size(0)):
            out[n, w] = _logsumexp([log_prior[k] + per_expert[k][w] for k in range(n_experts)])
    return out


def reference_probability_space(module, features, weight, bias):
    """zihangdai/mos model.py: mix the K probability vectors, then log(p + 1e-8)."""
    latent = torch.tanh(F.linear(features, module.latent.weight, module.latent.bias))
    logit = F.linear(latent.view(-1, E), weight, bias)  # (N * K, V)
    prior = F.softmax(F.linear(features, module.prior.weight), -1)  # (N, K)
    prob = F.softmax(logit, -1).view(-1, module.n_experts, weight.size(0))
    prob = (prob * prior.unsqueeze(2)).sum(1)
    return torch.log(prob + 1e-8)


def test_log_probs_match_the_formula_and_normalise():
    module, features, weight, bias = _setup()
    module.eval()
    log_probs = module.log_probs(features, weight, bias)  # (N, V)
    torch.testing.assert_close(log_probs, formula_log_probs(module, features, weight, bias))
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(features.size(0), dtype=torch.double))


def test_equals_the_reference_probability_space_result_where_it_does_not_underflow():
    module, features, weight, bias = _setup()
    module.eval()
    ours = module.log_probs(features, weight, bias)
    ref = reference_probability_space(module, features, weight, bias)
    assert ours.exp().min() > 1e-4  # far above the reference's 1e-8 floor
    torch.testing.assert_close(torch.log(ours.exp() + 1e-8), ref)


def test_log_space_is_exact_where_the_probability_space_underflows():
    module, features, weight, bias = _setup(scale=60.0)  # sharp experts: many p(w) below 1e-40
    module.eval()
    ours = module.log_probs(features, weight, bias)
    ref = reference_probability_space(module, features, weight, bias)
    exact = formula_log_probs(module, features, weight, bias)
    assert exact.min() < -100  # far below the reference's floor at log(1e-8) = -18.4
    assert ref.min() > -19
    torch.testing.assert_close(ours, exact)


def test_one_expert_is_a_plain_softmax_of_the_tanh_latent():
    module, features, weight, bias = _setup(n_experts=1)
    module.eval()
    latent = torch.tanh(features @ module.latent.weight.t() + module.latent.bias)  # (N, E)
    expected = torch.log_softmax(latent @ weight.t() + bias, dim=-1)
    torch.testing.assert_close(module.log_probs(features, weight, bias), expected)


def test_target_log_probs_gather_the_full_distribution():
    module, features, weight, bias = _setup()
    module.eval()
    target = torch.tensor([0, 10, 3, 3, 7, 1, 10])
    full = module.log_probs(features, weight, bias).gather(1, target.unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(module.target_log_probs(features, weight, bias, target), full)


@pytest.mark.parametrize("method", ["log_probs", "target_log_probs"])
def test_chunked_equals_unchunked_values_and_gradients(method):
    target = torch.tensor([0, 10, 3, 3, 7, 1, 10, 4, 2, 9])
    results = []
    for chunk_elements in (0, 3 * K * V, 4 * K * V - 1):  # one piece; chunks of 3 rows (10 = 3+3+3+1)
        torch.manual_seed(0)
        module, features, weight, bias = _setup(n=10, max_chunk_elements=chunk_elements)
        out = getattr(module, method)(features, weight, bias, *([target] if method == "target_log_probs" else []))
        out.sin().sum().backward()  # a non-uniform upstream gradient
        params = [features, weight, bias, *module.parameters()]
        results.append((out.detach(), [p.grad.clone() for p in params]))
    for out, grads in results[1:]:
        torch.testing.assert_close(out, results[0][0])
        for got, want in zip(grads, results[0][1]):
            torch.testing.assert_close(got, want)


def test_chunked_gradients_match_finite_differences():
    # Recomputation in the backward pass must give the true gradient (the module's own parameters
    # are compared against the unchunked path above).
    module, features, weight, bias = _setup(n=5, max_chunk_elements=2 * K * V)
    target = torch.tensor([1, 4, 4, 0, 10])
    module.eval()

    def fn(features, weight, bias):
        return module.target_log_probs(features, weight, bias, target)

    assert torch.autograd.gradcheck(fn, (features, weight, bias), fast_mode=True)


def test_gradients_reach_every_parameter():
    module, features, weight, bias = _setup(dropout=0.3, max_chunk_elements=2 * K * V)
    module.train()
    target = torch.tensor([0, 10, 3, 3, 7, 1, 10])
    module.target_log_probs(features, weight, bias, target).sum().backward()
    for name, tensor in [("features", features), ("weight", weight), ("bias", bias), *module.named_parameters()]:
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0, name


def test_latent_dropout_is_locked_over_time_for_batch_major_features():
    p, b, t = 0.5, 3, 6
    module, _, _, _ = _setup(dropout=p)
    module.train()
    features = torch.randn(b, t, H, dtype=torch.double)
    latent, _ = module._latent_and_prior(features)  # (B * T, K, E)
    latent = latent.view(b, t, K * E)
    undropped = torch.tanh(features @ module.latent.weight.t() + module.latent.bias)  # (B, T, K * E)
    kept = latent != 0
    assert (kept == kept[:, :1]).all()  # one mask per stream, reused at every step
    assert not (kept == kept[:1]).all()  # and a different one per stream
    torch.testing.assert_close(latent[kept], undropped[kept] / (1 - p))
    # 36 units per stream, 3 streams: a fair coin drops between 20% and 80% of 108 almost surely
    assert 0.2 < 1 - kept[:, 0].double().mean() < 0.8


def test_eval_mode_has_no_dropout():
    module, features, weight, bias = _setup(dropout=0.5)
    module.eval()
    torch.testing.assert_close(
        module.log_probs(features, weight, bias), formula_log_probs(module, features, weight, bias)
    )


@pytest.mark.parametrize("kwargs, flag", [
    ({"n_experts": 0}, "--n-experts"),
    ({"n_experts": 2, "dropout_latent": 1.0}, "--dropoutl"),
    ({"n_experts": 2, "max_chunk_elements": -1}, "--mos-chunk-elements"),
])
def test_bad_options_name_their_flag(kwargs, flag):
    with pytest.raises(ValueError, match=flag):
        MixtureOfSoftmaxes(H, E, **kwargs)
