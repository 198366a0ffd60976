"""fairseq's --amp route on the CPU (its CUDA GradScaler replaced by torch's CPU one), driven in the
trainer's order (backward, multiply_grads, clip_grad_norm, the task's lr scale around step), against
the fp32 route of the same optimizer: with `unscale_once` every update, the clipping and NT-ASGD's
averages are the fp32 ones bit for bit while nothing overflows; an overflowing update is skipped
whole. Without it fairseq's AMPOptimizer takes updates the loss scale times too small."""
import pytest
import torch
from fairseq.optim import AMPOptimizer
from omegaconf import OmegaConf

from awd_fairseq.optim.amp import unscale_once
from awd_fairseq.optim.nt_asgd import FairseqNTASGD

from test_nt_asgd_fairseq import nt_config

SCALE = 128.0  # fairseq's --fp16-init-scale default
SAMPLE_SIZE = 20


@pytest.fixture(autouse=True)
def cpu_grad_scaler(monkeypatch):
    monkeypatch.setattr(torch.cuda.amp, "GradScaler", lambda **kwargs: torch.amp.GradScaler("cpu", **kwargs))


def make_params():
    g = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(6, 4, generator=g)), torch.nn.Parameter(torch.randn(6, generator=g))]


def fp32_optimizer(params, wdecay=1.2e-6):
    optimizer = FairseqNTASGD(nt_config(asgd_from_start=True, lr=[30.0], wdecay=wdecay), params)
    optimizer.begin_epoch(1)  # averaging from the first update, as --asgd-from-start does
    return optimizer


def amp_optimizer(params, fixed=True, wdecay=1.2e-6):
    cfg = OmegaConf.create({"optimizer": {"_name": "nt_asgd"},
                            "common": {"fp16_init_scale": SCALE, "amp_scale_window": None, "min_loss_scale": 1e-4}})
    optimizer = AMPOptimizer(cfg, params, fp32_optimizer(params, wdecay))
    if fixed:
        unscale_once(optimizer)
    return optimizer


def loss_of(params, step, poison=False):
    g = torch.Generator().manual_seed(100 + step)
    x, y = torch.randn(4, SAMPLE_SIZE, generator=g), torch.randn(6, SAMPLE_SIZE, generator=g)
    loss = ((params[0] @ x + params[1][:, None] - y) ** 2).sum()  # summed over the sample, as fairseq's losses
    return loss * float("inf") if poison else loss


def update(optimizer, params, step, lr_scale, clip=0.25, poison=False):
    """fairseq's Trainer.train_step order, with the task's per-window lr scale around the step."""
    optimizer.zero_grad()
    optimizer.backward(loss_of(params, step, poison))
    optimizer.multiply_grads(1.0 / SAMPLE_SIZE)
    norm = optimizer.clip_grad_norm(clip)
    lr = optimizer.get_lr()
    optimizer.set_lr(lr * lr_scale)
    optimizer.step()
    optimizer.set_lr(lr)
    return norm


def run(make_optimizer, steps=6, poison_at=None):
    params = make_params()
    optimizer = make_optimizer(params)
    norms = []
    for step in range(steps):
        norms.append(update(optimizer, params, step, lr_scale=0.6 + 0.1 * step, poison=step == poison_at))
    inner = optimizer.fp32_optimizer if isinstance(optimizer, AMPOptimizer) else optimizer
    return [p.detach().clone() for p in params], inner.optimizer.averaged_params(), norms, inner.optimizer.num_averaged


def test_amp_updates_equal_fp32_updates_bit_for_bit():
    params, averages, norms, n = run(fp32_optimizer)
    amp_params, amp_averages, amp_norms, amp_n = run(amp_optimizer)
    assert n == amp_n == 6
    assert all(torch.equal(a, b) for a, b in zip(params, amp_params))
    assert all(torch.equal(a, b) for a, b in zip(averages, amp_averages))
    assert all(torch.equal(a, b) for a, b in zip(norms, amp_norms))
    assert all(norm > 0.25 for norm in norms)  # clipping took part in every update


def test_an_overflowing_update_is_skipped_whole():
    params, averages, _, n = run(fp32_optimizer, steps=5)
    # the same run with an overflow at update 2, and one more update to make up for it (fairseq's
    # trainer retries or skips the batch and does not count the update)
    amp_params = make_params()
    optimizer = amp_optimizer(amp_params)
    for step, lr_scale in ((0, 0.6), (1, 0.7), (2, 0.8), (2, 0.8), (3, 0.9), (4, 1.0)):
        poison = step == 2 and optimizer.scaler.get_scale() == SCALE
        update(optimizer, amp_params, step, lr_scale, poison=poison)
    assert optimizer.scaler.get_scale() == SCALE / 2  # backed off once
    assert optimizer.fp32_optimizer.optimizer.num_averaged == n == 5
    assert all(torch.equal(a, b.detach()) for a, b in zip(params, amp_params))
    assert all(torch.equal(a, b) for a, b in zip(averages, optimizer.fp32_optimizer.optimizer.averaged_params()))


def test_fairseqs_amp_optimizer_alone_unscales_twice():
    """What `unscale_once` is for: fairseq 0.12's AMPOptimizer steps with gradients / SCALE. When this
    fails, fairseq fixed it and optim/amp.py can go."""
    start = make_params()
    fp32_params, _, _, _ = run(lambda p: fp32_optimizer(p, wdecay=0.0), steps=1)  # no decay: the step is all gradient
    broken, _, _, _ = run(lambda p: amp_optimizer(p, fixed=False, wdecay=0.0), steps=1)
    fp32_step = [a - s.detach() for a, s in zip(fp32_params, start)]
    broken_step = [b - s.detach() for b, s in zip(broken, start)]
    for a, b in zip(fp32_step, broken_step):
        assert torch.allclose(b * SCALE, a, rtol=1e-4, atol=1e-6)


def test_only_fairseqs_amp_optimizer_is_changed():
    params = make_params()
    plain = fp32_optimizer(params)
    unscale_once(plain)
    assert type(plain) is FairseqNTASGD
