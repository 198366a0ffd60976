"""Locked dropout, embedding dropout and weight drop against slow, written-out references."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from awd_fairseq.modules.embedding_dropout import EmbeddingDropout, embedding_dropout
from awd_fairseq.modules.locked_dropout import LockedDropout
from awd_fairseq.modules.weight_drop import DropConnect, apply_weight_drop, drop_connect


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


# ---- locked dropout ---------------------------------------------------------------------------


def test_locked_dropout_mask_shared_over_time_and_scaled():
    p, (T, B, H) = 0.3, (7, 16, 32)
    x = torch.rand(T, B, H) + 0.5  # no zeros, so dropped units are exactly the zeros
    out = LockedDropout(p).train()(x)
    kept = out != 0  # (T, B, H)
    assert torch.equal(kept, kept[:1].expand_as(kept))  # same mask at every step
    torch.testing.assert_close(out, x * kept / (1 - p))
    assert (~kept[0]).float().mean().item() == pytest.approx(p, abs=0.05)


def test_locked_dropout_preserves_mean():
    x = torch.ones(2, 200, 500)
    assert LockedDropout(0.5).train()(x).mean().item() == pytest.approx(1.0, abs=0.02)


def test_locked_dropout_identity_in_eval_or_p0():
    x = torch.randn(5, 3, 4)
    assert LockedDropout(0.5).eval()(x) is x
    assert LockedDropout(0.0).train()(x) is x
    with pytest.raises(ValueError):
        LockedDropout(1.0)


# ---- embedding dropout ------------------------------------------------------------------------


def _tokens(V):
    # every word type at least once, plus repeats
    return torch.cat([torch.randperm(V), torch.randint(V, (40,))]).view(-1, 5)  # (T, 5)


def test_embedding_dropout_drops_whole_word_types():
    V, E, p = 30, 8, 0.5
    weight = torch.randn(V, E)
    tokens = _tokens(V)
    out = embedding_dropout(weight, tokens, p, training=True)  # (T, 5, E)
    ratio = out / weight[tokens]  # one value per position, repeated over E
    assert torch.allclose(ratio, ratio[..., :1].expand_as(ratio))
    factor = ratio[..., 0]
    assert set(factor.unique().tolist()) == {0.0, 2.0}
    for v in range(V):  # the same word gets the same draw everywhere in the batch
        assert factor[tokens == v].unique().numel() == 1
    assert torch.all(out[factor == 0] == 0)


def originals_embedded_dropout(weight, tokens, p, seed):
    """salesforce/awd-lstm-lm embed_regularize.py, written out: draw one Bernoulli(1 - p) per
    vocabulary row (a (V, 1) mask) from the seeded generator, scale the whole (V, E) matrix by
    mask / (1 - p), then look the tokens up."""
    torch.manual_seed(seed)
    mask = weight.new_empty(weight.size(0), 1).bernoulli_(1 - p) / (1 - p)  # (V, 1)
    return F.embedding(tokens, weight * mask)


def test_embedding_dropout_matches_the_originals_masked_matrix():
    V, E, p = 30, 8, 0.4
    weight = torch.randn(V, E, requires_grad=True)
    tokens = _tokens(V)
    torch.manual_seed(7)
    out = embedding_dropout(weight, tokens, p, training=True)
    ref_weight = weight.detach().clone().requires_grad_(True)
    ref = originals_embedded_dropout(ref_weight, tokens, p, seed=7)
    assert 0 < (ref == 0).all(-1).sum() < ref[..., 0].numel()  # some dropped, some kept
    torch.testing.assert_close(out, ref)
    upstream = torch.randn_like(out)
    out.backward(upstream)
    ref.backward(upstream)
    torch.testing.assert_close(weight.grad, ref_weight.grad)


def test_embedding_dropout_rate_and_fresh_draws():
    V, p = 4000, 0.3
    weight = torch.ones(V, 1)
    tokens = torch.arange(V)
    first = embedding_dropout(weight, tokens, p, training=True)[:, 0] == 0  # (V,) dropped types
    second = embedding_dropout(weight, tokens, p, training=True)[:, 0] == 0
    sd = (p * (1 - p) / V) ** 0.5
    assert abs(first.float().mean().item() - p) < 5 * sd
    both = (first & second).float().mean().item()  # independent draws: P(dropped twice) = p^2
    assert abs(both - p * p) < 5 * (p * p * (1 - p * p) / V) ** 0.5


@pytest.mark.parametrize("training, p", [(True, 0.0), (False, 0.5)])
def test_embedding_dropout_last_row_gets_gradient(training, p):
    # regression: the original passed padding_idx=-1, which froze the last vocabulary row
    V, E = 10, 4
    weight = torch.randn(V, E, requires_grad=True)
    tokens = torch.tensor([[V - 1, 0], [V - 1, 3]])
    out = embedding_dropout(weight, tokens, p, training=training)
    torch.testing.assert_close(out, F.embedding(tokens, weight))
    out.sum().backward()
    torch.testing.assert_close(weight.grad[V - 1], torch.full((E,), 2.0))


def test_embedding_dropout_module_eval_and_tying():
    V, E, p = 12, 6, 0.5
    module = EmbeddingDropout(nn.Embedding(V, E), p=p)
    decoder = nn.Linear(E, V)
    decoder.weight = module.embedding.weight  # tied output embedding
    tokens = torch.cat([torch.arange(V), torch.randint(V, (12,))]).view(6, 4)
    assert torch.equal(module.eval()(tokens), module.embedding.weight[tokens])
    upstream = torch.randn(6, 4, V)
    torch.manual_seed(3)
    (decoder(module.train()(tokens)) * upstream).sum().backward()
    # the tied matrix's gradient is the sum of its two uses: the dropped-out lookup and the projection
    ref_weight = module.embedding.weight.detach().clone().requires_grad_(True)
    embedded = originals_embedded_dropout(ref_weight, tokens, p, seed=3)  # (6, 4, E)
    ((embedded @ ref_weight.T + decoder.bias.detach()) * upstream).sum().backward()
    torch.testing.assert_close(module.embedding.weight.grad, ref_weight.grad)
    with pytest.raises(ValueError):
        EmbeddingDropout(nn.Embedding(12, 6, padding_idx=1), p=0.1)


# ---- weight drop ------------------------------------------------------------------------------


def lstm_reference(x, w_ih, w_hh, b_ih, b_hh):
    """Single-layer LSTM written out step by step (PyTorch gate order i, f, g, o); x (T, B, I)."""
    h = x.new_zeros(x.size(1), w_hh.size(1))  # (B, H)
    c = torch.zeros_like(h)
    outputs = []
    for x_t in x:
        gates = x_t @ w_ih.T + b_ih + h @ w_hh.T + b_hh  # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs)  # (T, B, H)


def _lstm(p):
    return apply_weight_drop(nn.LSTM(3, 5), ("weight_hh_l0",), p)


def _raw(lstm):
    return lstm.parametrizations.weight_hh_l0.original


def _reference(lstm, x, w_hh):
    return lstm_reference(x, lstm.weight_ih_l0, w_hh, lstm.bias_ih_l0, lstm.bias_hh_l0)


@pytest.mark.filterwarnings("error")
def test_weight_drop_fresh_mask_per_forward_matches_manual_lstm():
    p, x = 0.5, torch.randn(6, 2, 3)
    lstm = _lstm(p).train()
    outs, masks = [], []
    for _ in range(2):
        with parametrize.cached():  # one draw per forward, readable afterwards
            out = lstm(x)[0]
            w_hh = lstm.weight_hh_l0
        torch.testing.assert_close(out, _reference(lstm, x, w_hh))
        ratio = w_hh / _raw(lstm)
        assert set(ratio.unique().tolist()) == {0.0, 2.0}
        outs.append(out)
        masks.append(ratio)
    assert not torch.equal(masks[0], masks[1])
    torch.testing.assert_close(outs[0][0], outs[1][0])  # h0 = 0: step 0 ignores weight_hh
    assert not torch.allclose(outs[0][1:], outs[1][1:])


@pytest.mark.filterwarnings("error")
def test_weight_drop_without_cache_uses_last_draw_and_trains_raw_weight():
    p, x = 0.3, torch.randn(6, 2, 3)
    lstm = _lstm(p).train()
    draws = []
    lstm.parametrizations.weight_hh_l0[0].register_forward_hook(lambda m, i, o: draws.append(o))
    out = lstm(x)[0]
    assert draws, "nn.LSTM did not read the parametrized weight"
    w_used = draws[-1].detach()
    torch.testing.assert_close(out, _reference(lstm, x, w_used))
    # gradient of the raw weight = gradient through raw * mask, written out by hand
    mask = (w_used != 0).float() / (1 - p)
    raw = _raw(lstm).detach().clone().requires_grad_(True)
    upstream = torch.randn_like(out)
    out.backward(upstream)
    _reference(lstm, x, raw * mask).backward(upstream)
    assert _raw(lstm).grad is not None
    torch.testing.assert_close(_raw(lstm).grad, raw.grad)
    assert torch.all(_raw(lstm).grad[mask == 0] == 0)


@pytest.mark.filterwarnings("error")
def test_weight_drop_eval_uses_raw_weight():
    x = torch.randn(4, 2, 3)
    lstm = _lstm(0.5).eval()
    assert lstm.weight_hh_l0 is _raw(lstm)
    torch.testing.assert_close(lstm(x)[0], _reference(lstm, x, _raw(lstm)))
    with torch.no_grad():  # an in-place update of the raw weight is seen by the next forward
        _raw(lstm).mul_(2)
    torch.testing.assert_close(lstm(x)[0], _reference(lstm, x, _raw(lstm)))


def test_weight_drop_p0_is_noop_and_state_dict_keys():
    assert not parametrize.is_parametrized(_lstm(0.0))
    keys = _lstm(0.5).state_dict().keys()
    assert "parametrizations.weight_hh_l0.original" in keys and "weight_hh_l0" not in keys
    with pytest.raises(ValueError):
        DropConnect(1.0)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.65])
def test_drop_connect_has_dropouts_distribution(p):
    """The CPU mask (uniform >= p) against what F.dropout promises: values {0, w / (1 - p)}, a
    zero fraction within 5 standard errors of p, independent draws, gradients masked alike."""
    w = torch.randn(400, 500, requires_grad=True)
    out = drop_connect(w, p, True)
    kept = out != 0
    torch.testing.assert_close(out[kept], w[kept] / (1 - p))
    n = w.numel()
    assert abs((~kept).float().mean().item() - p) < 5 * (p * (1 - p) / n) ** 0.5
    again = drop_connect(w, p, True) != 0
    both = (kept & again).float().mean().item()  # independent masks: P(kept twice) = (1 - p)^2
    assert abs(both - (1 - p) ** 2) < 5 * ((1 - p) ** 2 * (1 - (1 - p) ** 2) / n) ** 0.5
    upstream = torch.randn_like(out)
    out.backward(upstream)
    torch.testing.assert_close(w.grad, upstream * kept / (1 - p))
    assert drop_connect(w, p, False) is w and drop_connect(w, 0.0, True) is w
