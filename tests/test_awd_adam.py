"""`awd_adam` is Adam with L2 decay in the gradient (main.py's torch.optim.Adam), checked against
Adam's update written out here, and shown to differ from fairseq's decoupled `adam`."""
import math

import torch
from omegaconf import OmegaConf

from awd_fairseq.optim.awd_adam import AWDAdamConfig, FairseqAWDAdam


def _adam_l2_reference(theta, grads, lr, betas, eps, wd):
    """Kingma and Ba's Adam on g + wd * theta, element by element."""
    theta = [float(x) for x in theta]
    m = [0.0] * len(theta)
    v = [0.0] * len(theta)
    for t, g in enumerate(grads, start=1):
        for i in range(len(theta)):
            gi = float(g[i]) + wd * theta[i]
            m[i] = betas[0] * m[i] + (1 - betas[0]) * gi
            v[i] = betas[1] * v[i] + (1 - betas[1]) * gi * gi
            m_hat, v_hat = m[i] / (1 - betas[0] ** t), v[i] / (1 - betas[1] ** t)
            theta[i] -= lr * m_hat / (math.sqrt(v_hat) + eps)
    return theta


def _run(cfg, theta0, grads):
    p = torch.nn.Parameter(torch.tensor(theta0, dtype=torch.float64))
    opt = FairseqAWDAdam(cfg, [p])
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return p.detach().tolist()


def test_awd_adam_is_adam_on_the_l2_gradient():
    theta0 = [0.5, -1.5, 2.0, 0.01]
    grads = [[0.1, -0.2, 0.05, 0.0], [0.3, 0.1, -0.4, 1e-3], [-0.2, 0.0, 0.2, 0.5]]
    cfg = OmegaConf.structured(AWDAdamConfig(adam_betas="(0.8, 0.95)", adam_eps=1e-6, wdecay=0.3, lr=[0.01]))
    ours = _run(cfg, theta0, grads)
    ref = _adam_l2_reference(theta0, grads, 0.01, (0.8, 0.95), 1e-6, 0.3)
    assert max(abs(a - b) for a, b in zip(ours, ref)) < 1e-12
    # the decay matters here: without it the result is another one
    no_decay = _adam_l2_reference(theta0, grads, 0.01, (0.8, 0.95), 1e-6, 0.0)
    assert max(abs(a - b) for a, b in zip(ours, no_decay)) > 1e-4


def test_defaults_are_torch_adams_and_main_pys_wdecay():
    cfg = AWDAdamConfig()
    assert (cfg.adam_betas, cfg.adam_eps, cfg.wdecay) == ("(0.9, 0.999)", 1e-8, 1.2e-6)
