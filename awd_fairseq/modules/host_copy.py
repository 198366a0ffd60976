"""Scalars for the host to read later, copied off the GPU without waiting for it now.

A training update logs a few scalars (the loss, AR, TAR). Reading a CUDA tensor (`float(t)`,
`.item()`) makes the host wait until every kernel queued before it has run, so the Python work of
the rest of the update (fairseq's logging, the next batch, the next forward's launches) stops
overlapping with the GPU. `to_host` instead queues one copy of all the scalars into pinned host
memory behind the kernels that compute them, and records a CUDA event after it; `host_float` waits
for that event alone, which by the time fairseq reduces the logged values (after its own
gradient-norm check in training) has long completed. The values are the same bits a blocking
read gives.

Where the copy is not safe to read lazily it is not made lazily: on the CPU the copy is complete
when it returns, and with several processes (torch.distributed) the tensors stay on the device,
where fairseq's all-reduce of the logging outputs reads them (it sums them on the host first,
before any event could be waited for).
"""
from typing import Dict

import torch
from torch import Tensor

_READY = "_awd_host_copy_done"  # attribute of a host copy: the CUDA event recorded after it


def _several_processes() -> bool:
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def to_host(values: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """{name: 0-dim tensor} -> {name: 0-dim float32 host tensor}, read with `host_float`."""
    if not values:
        return {}
    names = list(values)
    stacked = torch.stack([values[n].detach().float() if values[n].requires_grad else values[n].float()
                           for n in names])  # (n,): one copy for all
    if stacked.is_cuda and _several_processes():
        return dict(zip(names, stacked.unbind()))
    host = stacked.to("cpu", copy=True, non_blocking=True)  # from CUDA: into pinned memory
    event = None
    if stacked.is_cuda:
        event = torch.cuda.Event()
        event.record()
    out = {}
    for name, value in zip(names, host.unbind()):
        setattr(value, _READY, event)
        out[name] = value
    return out


def host_float(value) -> float:
    """float(value), waiting for the copy `to_host` made (and for nothing else) first."""
    event = getattr(value, _READY, None)
    if event is not None:
        event.synchronize()
    return float(value)
