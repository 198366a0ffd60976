"""The Mogrifier LSTM layer against the paper's equations written out below, one example and one
step at a time (Melis et al. 2020, arXiv 1909.01792, eq. 1-2, with deepmind/lamb's capped input
gate), against torch's own LSTM for zero rounds, and against itself in one piece for a window
split in two with the state carried. The state-dropout mask is read off the gradient of the first
step's output with respect to the initial state (zero exactly where h is dropped), and the whole
window is then recomputed with that one mask."""
import pytest
import torch

from awd_fairseq.modules.mogrifier_lstm import MogrifierLSTMLayer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script's


@pytest.fixture(autouse=True)
def float64():
    """The layers and the references in float64: tight tolerances."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(dtype)


def paper_matrices(layer):
    """Q^i (in x H) for odd i and R^i (H x in) for even i, i = 1 .. r, with their biases, from the
    layer's factors (stored (from, to), as right-multiplied; the paper multiplies column vectors)."""
    mats, per = [], 1 if layer.rank == 0 else 2
    for k in range(layer.rounds):
        f = layer.factors[per * k : per * (k + 1)]
        product = f[0] if per == 1 else f[0] @ f[1]
        mats.append((product.t(), layer.round_biases[k]))
    return mats


def sigmoid(v):
    return 1.0 / (1.0 + torch.exp(-v))


def reference(layer, x, h, c, mask=None):
    """x (T, B, in), h and c (B, H); mask (B, H) on h_prev before the rounds, or None."""
    H = layer.hidden_size
    W_ih, W_hh, b = layer.weight_ih, layer.weight_hh, layer.bias
    outputs = []
    h, c = h.clone(), c.clone()
    for t in range(x.size(0)):
        new_h, new_c = torch.empty_like(h), torch.empty_like(c)
        for n in range(x.size(1)):
            xs = {-1: x[t, n]}  # x^{-1} = x
            hs = {0: h[n] * (1 if mask is None else mask[n])}  # h^0 = h_prev (dropped)
            for i, (M, bias) in enumerate(paper_matrices(layer), start=1):
                if i % 2 == 1:  # x^i = 2 sigma(Q^i h^{i-1}) * x^{i-2}
                    xs[i] = 2 * sigmoid(M @ hs[i - 1] + bias) * xs[i - 2]
                else:  # h^i = 2 sigma(R^i x^{i-1}) * h^{i-2}
                    hs[i] = 2 * sigmoid(M @ xs[i - 1] + bias) * hs[i - 2]
            xm, hm = xs[max(xs)], hs[max(hs)]  # the last x and h of the rounds
            pre = W_ih @ xm + W_hh @ hm + b
            i_g, f_g, g_g, o_g = (pre[k * H : (k + 1) * H] for k in range(4))
            f = sigmoid(f_g)
            i = torch.minimum(sigmoid(i_g), 1 - f) if layer.capped_input_gate else sigmoid(i_g)
            new_c[n] = f * c[n] + i * torch.tanh(g_g)
            new_h[n] = sigmoid(o_g) * torch.tanh(new_c[n])
        h, c = new_h, new_c
        outputs.append(h)
    return torch.stack(outputs), h, c


def make(rounds, rank, capped=True, step="eager", fused=True, state_dropout=0.0, seed=0):
    torch.manual_seed(seed)
    layer = MogrifierLSTMLayer(5, 7, rounds=rounds, rank=rank, state_dropout=state_dropout,
                               capped_input_gate=capped, step=step, fused_gates=fused)
    with torch.no_grad():  # lamb's zero round biases would leave the biases' part untested
        for bias in layer.round_biases:
            bias.normal_(0, 0.5)
    return layer.eval()


def inputs(seed=1, steps=6, batch=3):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(steps, batch, 5, generator=g), torch.randn(batch, 7, generator=g),
            torch.randn(batch, 7, generator=g))


@pytest.mark.parametrize("rank", [0, 3], ids=["full_rank", "low_rank"])
@pytest.mark.parametrize("rounds", [1, 2, 5, 6])
@pytest.mark.parametrize("step,fused", [("eager", True), ("eager", False), ("script", True), ("script", False)])
def test_layer_is_the_papers_equations(rank, rounds, step, fused):
    layer = make(rounds, rank, step=step, fused=fused)
    x, h, c = inputs()
    y, (h1, c1) = layer(x, (h, c))
    with torch.no_grad():
        ref_y, ref_h, ref_c = reference(layer, x, h, c)
    torch.testing.assert_close(y, ref_y)
    torch.testing.assert_close((h1, c1), (ref_h, ref_c))


def test_uncapped_input_gate_and_zero_rounds_is_torchs_lstm():
    layer = make(0, 0, capped=False)
    lstm = torch.nn.LSTM(5, 7)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(layer.weight_ih)
        lstm.weight_hh_l0.copy_(layer.weight_hh)
        lstm.bias_ih_l0.copy_(layer.bias)
        lstm.bias_hh_l0.zero_()
    x, h, c = inputs()
    y, (h1, c1) = layer(x, (h, c))
    ref, (ref_h, ref_c) = lstm(x, (h[None], c[None]))
    torch.testing.assert_close(y, ref)
    torch.testing.assert_close((h1, c1), (ref_h[0], ref_c[0]))
    with torch.no_grad():
        assert not torch.allclose(make(0, 0, capped=True)(x, (h, c))[0], ref)  # the cap shows


def mask_of_this_window(layer, x, h, c):
    """Run one training window; the state mask is read off d y_0 / d h_prev (zero where dropped)."""
    h = h.clone().requires_grad_()
    y, _ = layer(x, (h, c))
    (grad,) = torch.autograd.grad(y[0].sum(), h, retain_graph=True)
    mask = (grad != 0).to(x.dtype) / (1 - layer.state_dropout)
    return y, mask


@pytest.mark.parametrize("step", ["eager", "script"])
def test_state_dropout_one_mask_per_window_redrawn_between_windows(step):
    layer = make(3, 2, step=step, state_dropout=0.5).train()
    x, h, c = inputs(steps=5, batch=4)
    masks = []
    for _ in range(2):  # two windows
        y, mask = mask_of_this_window(layer, x, h, c)
        assert 0 < mask.count_nonzero() < mask.numel()
        with torch.no_grad():
            torch.testing.assert_close(y, reference(layer, x, h, c, mask)[0])  # the same mask at every step
        masks.append(mask)
    assert not torch.equal(masks[0], masks[1])
    with torch.no_grad():
        torch.testing.assert_close(layer.eval()(x, (h, c))[0], reference(layer, x, h, c)[0])  # eval: none


@pytest.mark.parametrize("step", ["eager", "script"])
@pytest.mark.parametrize("rounds", [0, 5])
def test_window_split_in_two_equals_one_piece(step, rounds):
    layer = make(rounds, 3, step=step)
    x, h, c = inputs(steps=8)
    x.requires_grad_()
    whole, (hw, cw) = layer(x, (h, c))
    loss = whole.pow(2).sum() + cw.sum()
    grads = torch.autograd.grad(loss, [x, *layer.parameters()])
    first, state = layer(x[:3], (h, c))
    second, (hs, cs) = layer(x[3:], state)  # the state carried, not detached: the same graph
    torch.testing.assert_close(torch.cat([first, second]), whole)
    split_grads = torch.autograd.grad(torch.cat([first, second]).pow(2).sum() + cs.sum(), [x, *layer.parameters()])
    for a, b in zip(grads, split_grads):
        torch.testing.assert_close(a, b)


def test_bad_options_name_the_flag():
    with pytest.raises(ValueError, match="--state-dropout"):
        MogrifierLSTMLayer(4, 4, state_dropout=1.0)
    with pytest.raises(ValueError, match="--mogrifier-step"):
        MogrifierLSTMLayer(4, 4, step="fast")
    with pytest.raises(ValueError, match="--mogrifier-rounds"):
        MogrifierLSTMLayer(4, 4, rounds=-1)
