"""forget_mult: the reference against the closed form, the fast paths against the reference."""
import pytest
import torch

from awd_fairseq.modules.forget_mult import (
    forget_mult,
    forget_mult_reference,
    forget_mult_torch,
)

FAST_PATHS = [forget_mult_torch, forget_mult]
FAST_IDS = ["torch", "dispatch"]


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def closed_form(f, z, c0):
    """c_t = (prod_{r<=t} f_r) c0 + sum_{s<=t} (prod_{s<r<=t} f_r) (1 - f_s) z_s, in float64."""
    T = f.shape[0]
    c = torch.empty_like(z)
    for t in range(T):
        total = f[: t + 1].prod(0) * c0
        for s in range(t + 1):
            total = total + f[s + 1 : t + 1].prod(0) * (1 - f[s]) * z[s]
        c[t] = total
    return c


def make_inputs(T, B, H, dtype=torch.float32, strided=False):
    if strided:  # f and z as the chunks of one gate projection, as QRNNLayer passes them
        gates = torch.randn(T, B, 3 * H, dtype=dtype)
        f, z = gates[..., H : 2 * H].sigmoid_(), gates[..., :H].tanh_()  # (T, B, H), strided
    else:
        f, z = torch.rand(T, B, H, dtype=dtype), torch.randn(T, B, H, dtype=dtype)
    c0 = torch.randn(B, H, dtype=dtype)
    return f, z, c0


def leaf(t):
    """A fresh leaf with the same strides as `t` (clone() would make a strided view contiguous)."""
    copy = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device).copy_(t)
    return copy.requires_grad_(True)


def values_and_grads(fn, f, z, c0, grad):
    leaves = [leaf(t) for t in (f, z) + ((c0,) if c0 is not None else ())]
    out = fn(leaves[0], leaves[1], leaves[2] if c0 is not None else None)
    return (out, *torch.autograd.grad(out, leaves, grad))


def test_reference_matches_closed_form():
    f, z, c0 = make_inputs(6, 2, 3, torch.float64)
    torch.testing.assert_close(forget_mult_reference(f, z, c0), closed_form(f, z, c0))
    torch.testing.assert_close(forget_mult_reference(f, z), closed_form(f, z, torch.zeros_like(c0)))


@pytest.mark.parametrize("fn", FAST_PATHS, ids=FAST_IDS)
@pytest.mark.parametrize("T", [1, 2, 17])
@pytest.mark.parametrize("with_c0", [False, True])
@pytest.mark.parametrize("strided", [False, True])
def test_fast_path_matches_reference(fn, T, with_c0, strided):
    f, z, c0 = make_inputs(T, 3, 5, strided=strided)
    c0 = c0 if with_c0 else None
    assert f.is_contiguous() != strided
    grad = torch.randn(T, 3, 5)
    expected = values_and_grads(forget_mult_reference, f, z, c0, grad)
    actual = values_and_grads(fn, f, z, c0, grad)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fn", FAST_PATHS, ids=FAST_IDS)
@pytest.mark.parametrize("strided", [False, True])
def test_fast_path_gradcheck_float64(fn, strided):
    f, z, c0 = make_inputs(5, 2, 3, torch.float64, strided=strided)
    f = f.clamp(0.05, 0.95) if not strided else f  # keep the finite differences inside [0, 1]
    inputs = tuple(leaf(t) for t in (f, z, c0))
    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradcheck(lambda f, z: fn(f, z), inputs[:2])


@pytest.mark.parametrize("fn", FAST_PATHS, ids=FAST_IDS)
@pytest.mark.parametrize("value", [0.0, 1.0, 1e-8, 1 - 1e-7])
def test_extreme_forget_gates(fn, value):
    f, z, c0 = make_inputs(9, 2, 4)
    f[::2] = value  # every other step at the extreme, the rest random
    grad = torch.randn(9, 2, 4)
    expected = values_and_grads(forget_mult_reference, f.double(), z.double(), c0.double(), grad.double())
    actual = values_and_grads(fn, f, z, c0, grad)
    for a, e in zip(actual, expected):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a.double(), e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fn", FAST_PATHS, ids=FAST_IDS)
def test_forget_gate_one_keeps_and_zero_replaces_exactly(fn):
    f, z, c0 = make_inputs(4, 2, 3)
    assert torch.equal(fn(torch.ones_like(f), z, c0), c0.expand_as(z))
    assert torch.equal(fn(torch.zeros_like(f), z, c0), z)


@pytest.mark.parametrize("fn", FAST_PATHS, ids=FAST_IDS)
@pytest.mark.parametrize("shape", [(70, 20, 1550), (3, 1, 700)], ids=["ptb", "batch1"])
def test_fast_path_at_training_size(fn, shape):
    # the PTB QRNN's window (split over two threads), and generation's batch of one
    f, z, c0 = make_inputs(*shape, strided=True)
    grad = torch.randn(shape)
    expected = values_and_grads(forget_mult_reference, f, z, c0, grad)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        actual = values_and_grads(fn, f, z, c0, grad)
    finally:
        torch.set_num_threads(threads)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fn", FAST_PATHS, ids=FAST_IDS)
def test_empty_sequence(fn):
    f, z, c0 = (t.requires_grad_(True) for t in make_inputs(0, 2, 3))
    c = fn(f, z, c0)
    assert c.shape == (0, 2, 3)
    grads = torch.autograd.grad(c, (f, z, c0), torch.ones_like(c), allow_unused=True)
    assert all(g is None or not g.any() for g in grads)


def test_sum_gradient_with_zero_strides():
    # .sum() hands the backward an expanded (all-zero-stride) gradient
    f, z, c0 = (t.requires_grad_(True) for t in make_inputs(6, 2, 3))
    expected = torch.autograd.grad(forget_mult_reference(f, z, c0).sum(), (f, z, c0))
    for fn in FAST_PATHS:
        for a, e in zip(torch.autograd.grad(fn(f, z, c0).sum(), (f, z, c0)), expected):
            torch.testing.assert_close(a, e)


def test_dispatcher_uses_the_torch_path_on_the_cpu():
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        f, z, c0 = (t.to(dtype).requires_grad_(True) for t in make_inputs(3, 2, 2))
        assert type(forget_mult(f, z, c0).grad_fn).__name__ == "ForgetMultTorchBackward"


@pytest.mark.parametrize("fn", FAST_PATHS, ids=FAST_IDS)
def test_long_sequence_is_stable(fn):
    T, B, H = 300, 2, 64
    f = 1 - torch.rand(T, B, H) * 1e-3  # slow decay: 300 nearly-1 factors
    f[:, 0, :8] = torch.rand(T, 8)  # and some ordinary gates
    z = torch.randn(T, B, H)
    c0 = torch.randn(B, H) * 3
    grad = torch.randn(T, B, H)
    expected = values_and_grads(forget_mult_reference, f.double(), z.double(), c0.double(), grad.double())
    actual = values_and_grads(fn, f, z, c0, grad)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a.double(), e, rtol=1e-4, atol=1e-4)
    # each c_t is a convex combination of c0 and z_1..z_t
    bound = torch.maximum(c0.abs(), z.abs().amax(0))
    assert (actual[0].abs() <= bound + 1e-5).all()


@pytest.mark.parametrize("fn", [forget_mult_reference] + FAST_PATHS, ids=["reference"] + FAST_IDS)
def test_split_sequence_with_carried_state(fn):
    T, split = 12, 5
    f, z, c0 = (t.requires_grad_(True) for t in make_inputs(T, 3, 4))
    grad = torch.randn(T, 3, 4)
    whole = fn(f, z, c0)
    whole_grads = torch.autograd.grad(whole, (f, z, c0), grad)
    first = fn(f[:split], z[:split], c0)
    second = fn(f[split:], z[split:], first[-1])
    pieces = torch.cat([first, second])
    torch.testing.assert_close(pieces, whole)
    for a, e in zip(torch.autograd.grad(pieces, (f, z, c0), grad), whole_grads):
        torch.testing.assert_close(a, e)


def test_dispatcher_falls_back_to_reference_for_mixed_dtypes():
    f, z, c0 = make_inputs(4, 2, 3)
    out = forget_mult(f.double(), z, c0)
    torch.testing.assert_close(out, forget_mult_reference(f.double(), z, c0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (and Triton)")
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 2e-2), (torch.bfloat16, 1e-1)])
def test_triton_matches_reference(dtype, tol):
    pytest.importorskip("triton")
    from awd_fairseq.modules.forget_mult_triton import forget_mult_triton

    f, z, c0 = (t.cuda() for t in make_inputs(37, 4, 130, torch.float64, strided=True))
    grad = torch.randn(37, 4, 130, dtype=torch.float64, device="cuda")
    expected = values_and_grads(forget_mult_reference, f, z, c0, grad)
    actual = values_and_grads(forget_mult_triton, f.to(dtype), z.to(dtype), c0.to(dtype), grad.to(dtype))
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a.double(), e, rtol=tol, atol=tol)
