"""The Mogrifier step under torch.compile equals the eager step (outputs and gradients). In the e2e
set although it runs no fairseq tool: inductor compiles C++ for a minute on its first use."""
import pytest
import torch

from test_mogrifier_lstm import inputs, make

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script's


def test_compiled_step_equals_eager():
    pytest.importorskip("torch._inductor")
    eager, compiled = make(5, 3, step="eager"), make(5, 3, step="compile")
    x, h, c = inputs(steps=3)
    x.requires_grad_()
    ye, _ = eager(x, (h, c))
    yc, _ = compiled(x, (h, c))
    torch.testing.assert_close(yc, ye)
    ge = torch.autograd.grad(ye.sum(), [x, *eager.parameters()])
    gc = torch.autograd.grad(yc.sum(), [x, *compiled.parameters()])
    for a, b in zip(ge, gc):
        torch.testing.assert_close(a, b)
