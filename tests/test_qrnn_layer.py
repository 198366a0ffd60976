"""QRNNLayer against the QRNN recurrence written out step by step (Bradbury et al. 2016, eq. 1-4)."""
import pytest
import torch
import torch.nn.functional as F

from awd_fairseq.modules import onednn_linear
from awd_fairseq.modules.onednn_linear import linear, onednn_linear_available
from awd_fairseq.modules.qrnn import QRNNLayer
from awd_fairseq.modules.weight_drop import drop_connect


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def written_out(x, weight, bias, window, output_gate, c=None, prev_x=None, zoneout_eval=0.0):
    """The recurrence one step at a time, with the layer's weights; returns h and (c_T, x_T)."""
    T, B, _ = x.shape
    H = weight.shape[0] // (3 if output_gate else 2)
    c = torch.zeros(B, H, dtype=x.dtype) if c is None else c
    prev_x = torch.zeros_like(x[0]) if prev_x is None else prev_x
    outputs = []
    for t in range(T):
        source = torch.cat([x[t], prev_x], -1) if window == 2 else x[t]  # (B, window * in)
        gates = source @ weight.t() + bias  # (B, n_gates * H)
        z_t = torch.tanh(gates[:, :H])
        f_t = torch.sigmoid(gates[:, H : 2 * H])
        f_t = zoneout_eval + (1 - zoneout_eval) * f_t  # expected gate under zoneout
        c = f_t * c + (1 - f_t) * z_t
        outputs.append(torch.sigmoid(gates[:, 2 * H :]) * c if output_gate else c)
        prev_x = x[t]
    return torch.stack(outputs), (c, prev_x)


@pytest.mark.parametrize("window", [1, 2])
@pytest.mark.parametrize("output_gate", [True, False])
def test_matches_written_out_recurrence(window, output_gate):
    layer = QRNNLayer(4, 6, window=window, output_gate=output_gate).double()
    x = torch.randn(7, 3, 4, dtype=torch.float64)
    c0, prev_x = torch.randn(3, 6, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    state = (c0,) if window == 1 else (c0, prev_x)
    h, new_state = layer(x, state)
    expected_h, (c_T, x_T) = written_out(x, layer.linear.weight, layer.linear.bias, window, output_gate,
                                         c0, prev_x if window == 2 else None)
    torch.testing.assert_close(h, expected_h)
    assert h.shape == (7, 3, 6) and layer.state_names == (("c",) if window == 1 else ("c", "prev_x"))
    torch.testing.assert_close(new_state[0], c_T)
    if window == 2:
        torch.testing.assert_close(new_state[1], x_T)
    else:
        assert len(new_state) == 1


def test_no_state_means_zeros():
    layer = QRNNLayer(4, 5, window=2).double()
    x = torch.randn(6, 2, 4, dtype=torch.float64)
    zeros = (torch.zeros(2, 5, dtype=torch.float64), torch.zeros(2, 4, dtype=torch.float64))
    torch.testing.assert_close(layer(x)[0], layer(x, zeros)[0])


@pytest.mark.parametrize("window", [1, 2])
def test_split_sequence_with_carried_state(window):
    layer = QRNNLayer(4, 5, window=window).double()
    x = torch.randn(11, 3, 4, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(11, 3, 5, dtype=torch.float64)
    whole, whole_state = layer(x)
    expected_grads = torch.autograd.grad(whole, (x, layer.linear.weight), grad)
    first, state = layer(x[:4])
    second, final_state = layer(x[4:], state)
    pieces = torch.cat([first, second])
    torch.testing.assert_close(pieces, whole)
    for a, e in zip(final_state, whole_state):
        torch.testing.assert_close(a, e)
    for a, e in zip(torch.autograd.grad(pieces, (x, layer.linear.weight), grad), expected_grads):
        torch.testing.assert_close(a, e)


def test_weight_drop_in_training_only():
    p = 0.4
    layer = QRNNLayer(4, 5, window=2, weight_drop=p).double()
    x = torch.randn(6, 3, 4, dtype=torch.float64)
    raw = layer.linear.parametrizations.weight.original
    layer.train()
    torch.manual_seed(1)
    h, _ = layer(x)
    torch.manual_seed(1)  # the weight's mask is the forward's first random draw
    dropped = drop_connect(raw, p, training=True)
    assert (dropped == 0).any() and not torch.equal(dropped, raw)
    torch.testing.assert_close(h, written_out(x, dropped, layer.linear.bias, 2, True)[0])
    assert not torch.equal(layer(x)[0], h)  # a fresh mask per forward
    h.sum().backward()
    assert raw.grad is not None and (raw.grad[dropped == 0] == 0).all()
    layer.eval()
    torch.testing.assert_close(layer(x)[0], written_out(x, raw, layer.linear.bias, 2, True)[0])


def test_zoneout_keeps_previous_cell_in_training():
    p, (T, B, H) = 0.3, (40, 8, 32)
    layer = QRNNLayer(6, H, output_gate=False, zoneout=p).train()  # h = c
    x = torch.randn(T, B, 6)
    c0 = torch.randn(B, H)
    h, _ = layer(x, (c0,))
    kept = torch.cat([h[:1] == c0, h[1:] == h[:-1]])  # f == 1 exactly: the cell is copied bit for bit
    assert kept.float().mean().item() == pytest.approx(p, abs=0.03)
    h_all_kept, (c_T,) = QRNNLayer(6, H, zoneout=1.0, output_gate=False).train()(x, (c0,))
    assert torch.equal(c_T, c0) and torch.equal(h_all_kept, c0.expand(T, B, H))


def test_zoneout_in_eval_is_deterministic_expectation():
    p = 0.3
    layer = QRNNLayer(4, 5, window=2, zoneout=p).double().eval()
    x = torch.randn(6, 3, 4, dtype=torch.float64)
    h, _ = layer(x)
    torch.testing.assert_close(layer(x)[0], h)
    expected, _ = written_out(x, layer.linear.weight, layer.linear.bias, 2, True, zoneout_eval=p)
    torch.testing.assert_close(h, expected)


def test_invalid_arguments():
    with pytest.raises(ValueError):
        QRNNLayer(4, 5, window=3)
    with pytest.raises(ValueError):
        QRNNLayer(4, 5, zoneout=1.5)


@pytest.mark.parametrize("window", [1, 2])
def test_float32_layer_matches_float64_recurrence(window):
    # float32 takes the fast paths (oneDNN gate projection, compiled forget-mult) where available
    layer = QRNNLayer(5, 7, window=window)
    x = torch.randn(9, 4, 5, requires_grad=True)
    state = (torch.randn(4, 7),) if window == 1 else (torch.randn(4, 7), torch.randn(4, 5))
    grad = torch.randn(9, 4, 7)
    h, new_state = layer(x, state)
    grads = torch.autograd.grad(h, (x, layer.linear.weight, layer.linear.bias), grad)
    x64, w64, b64 = (t.detach().double().requires_grad_(True) for t in (x, layer.linear.weight, layer.linear.bias))
    state64 = [s.double() for s in state]
    expected, (c_T, _) = written_out(x64, w64, b64, window, True, state64[0], state64[1] if window == 2 else None)
    expected_grads = torch.autograd.grad(expected, (x64, w64, b64), grad.double())
    torch.testing.assert_close(h.double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(new_state[0].double(), c_T, rtol=1e-5, atol=1e-5)
    for a, e in zip(grads, expected_grads):
        torch.testing.assert_close(a.double(), e, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bias", [True, False])
def test_onednn_linear_matches_f_linear(bias):
    x = torch.randn(6, 3, 10, requires_grad=True)
    w = torch.randn(8, 10, requires_grad=True)
    b = torch.randn(8, requires_grad=True) if bias else None
    leaves = [t for t in (x, w, b) if t is not None]
    grad = torch.randn(6, 3, 8)
    y = linear(x, w, b)
    expected = F.linear(x, w, b)
    torch.testing.assert_close(y, expected)
    for a, e in zip(torch.autograd.grad(y, leaves, grad), torch.autograd.grad(expected, leaves, grad)):
        torch.testing.assert_close(a, e)
    if onednn_linear_available():
        assert type(y.grad_fn).__name__ == "ViewBackward0"  # around OneDNNLinearBackward
        assert type(y.grad_fn.next_functions[0][0]).__name__ == "OneDNNLinearBackward"


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
def test_the_private_onednn_op_still_exists(monkeypatch):
    """torch.ops.mkldnn._linear_pointwise is private: a torch release that drops or changes it
    silently sends the QRNN back to F.linear (slower on AMD), so this fails loudly instead."""
    monkeypatch.delenv("AWD_FAIRSEQ_ONEDNN_LINEAR", raising=False)
    x, w, b = torch.randn(7, 5), torch.randn(4, 5), torch.randn(4)
    torch.testing.assert_close(onednn_linear._onednn(x, w, b), F.linear(x, w, b))
    onednn_linear.onednn_linear_available.cache_clear()
    try:
        assert onednn_linear.onednn_linear_available()
    finally:
        onednn_linear.onednn_linear_available.cache_clear()


def test_onednn_linear_gradcheck_falls_back_in_float64():
    x, w, b = (torch.randn(*s, dtype=torch.float64, requires_grad=True) for s in ((3, 4), (2, 4), (2,)))
    assert torch.autograd.gradcheck(linear, (x, w, b))
