"""rnn_gradients: a CUDA RNN is switched to training mode for dynamic evaluation's gradients, itself
only; the weight drop under it stays off, so the scores and gradients are evaluation mode's."""
import pytest
import torch
from torch import nn

from awd_fairseq.modules import rnn_gradients as rg
from awd_fairseq.modules.lstm_layer import LSTMLayer


def _layer():
    torch.manual_seed(0)
    return LSTMLayer(6, 8, weight_drop=0.5).eval()


def _output_and_grad(layer, x):
    out, _ = layer(x)
    return out.detach(), torch.autograd.grad(out.sum(), layer.lstm.parametrizations.weight_hh_l0.original)[0]


def test_only_the_rnn_itself_enters_training_mode(monkeypatch):
    monkeypatch.setattr(rg, "on_cuda", lambda module: True)  # as if on a GPU
    layer, x = _layer(), torch.randn(5, 2, 6)
    reference = _output_and_grad(layer, x)  # evaluation mode: no weight drop
    with rg.rnn_gradients(layer):
        assert layer.lstm.training and not layer.training
        assert not any(m.training for m in layer.lstm.parametrizations.modules())  # DropConnect stays off
        inside = _output_and_grad(layer, x)
    assert not any(m.training for m in layer.modules())  # restored
    for a, b in zip(reference, inside):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)  # the same evaluation (no mask drawn)


def test_an_exception_still_restores_evaluation_mode(monkeypatch):
    monkeypatch.setattr(rg, "on_cuda", lambda module: True)
    layer = _layer()
    with pytest.raises(RuntimeError, match="boom"), rg.rnn_gradients(layer):
        raise RuntimeError("boom")
    assert not layer.lstm.training


def test_off_cuda_nothing_changes():
    layer = _layer()
    with rg.rnn_gradients(layer):
        assert not layer.lstm.training


def test_a_stacked_rnn_with_dropout_is_refused(monkeypatch):
    monkeypatch.setattr(rg, "on_cuda", lambda module: True)
    model = nn.Sequential(nn.LSTM(4, 4, num_layers=2, dropout=0.3)).eval()
    with pytest.raises(ValueError, match="dropout 0.3 between its 2 layers"):
        with rg.rnn_gradients(model):
            pass


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (cuDNN)")
def test_cudnn_differentiates_an_lstm_in_evaluation_mode():
    layer, x = _layer().cuda(), torch.randn(5, 2, 6, device="cuda")
    with pytest.raises(RuntimeError, match="training mode"):
        _output_and_grad(layer, x)  # what dynamic evaluation met without the switch
    with rg.rnn_gradients(layer):
        out, grad = _output_and_grad(layer, x)
    cpu_out, cpu_grad = _output_and_grad(layer.cpu(), x.cpu())
    torch.testing.assert_close(out.cpu(), cpu_out, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grad.cpu(), cpu_grad, rtol=1e-4, atol=1e-5)
