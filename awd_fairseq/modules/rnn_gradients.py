"""Gradients of an RNN run in evaluation mode, on a GPU: cuDNN computes the backward pass of its
RNN kernels only after a forward pass in training mode ("cudnn RNN backward can only be called in
training mode"), while dynamic evaluation takes its gradients with the model in evaluation mode
(no dropout, as the reference code's dynamiceval.py).

`rnn_gradients(model)` sets `training` on the model's `nn.RNNBase` modules themselves, not on
their children: the weight-drop parametrization under an LSTM stays in evaluation mode. An
`nn.LSTM` reads the flag for cuDNN's mode and for the dropout between its own stacked layers,
which the plugin never uses (each LSTM is one layer, dropout 0), so the scores are unchanged. A
no-op off CUDA, where torch's RNNs differentiate in either mode.
"""
import contextlib
from typing import Iterator, List

from torch import nn


def on_cuda(module: nn.Module) -> bool:
    return any(p.is_cuda for p in module.parameters())


def _rnns_to_switch(model: nn.Module) -> List[nn.RNNBase]:
    rnns = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.RNNBase) or module.training or not on_cuda(module):
            continue
        if module.num_layers > 1 and module.dropout > 0:
            raise ValueError(f"{name}: an nn.{type(module).__name__} with dropout {module.dropout} between its "
                             f"{module.num_layers} layers cannot be differentiated in evaluation mode on cuDNN; "
                             "dynamic evaluation needs a model without it")
        rnns.append(module)
    return rnns


@contextlib.contextmanager
def rnn_gradients(model: nn.Module) -> Iterator[None]:
    """Within: the model's CUDA RNN modules in training mode (themselves only); restored after."""
    rnns = _rnns_to_switch(model)
    for rnn in rnns:
        rnn.training = True
    try:
        yield
    finally:
        for rnn in rnns:
            rnn.training = False
