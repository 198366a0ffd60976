"""Counting, on the CPU, the aten ops a training update dispatches and the device-to-host reads it
would make on a GPU, each attributed to the code that asked for it (scripts/bench/count_ops.py).

On a GPU every read of a device value by the host (`.item()`, `float()`, `bool()`, `.tolist()`,
`.numpy()`, `.cpu()`, and the ops whose output size depends on the data: `nonzero`, boolean-mask
indexing, `unique`, ...) waits for all the work queued before it; every aten op is (about) one
kernel launch. On the CPU nothing waits, and only some reads dispatch an aten op: `.item()` and its
relatives reach `aten._local_scalar_dense`, but `.tolist()` / `.numpy()` / `.cpu()` of a CPU tensor
read its memory directly. So `OpCounter` decides which tensors WOULD live on the GPU and watches
every way of reading them:

* device tensors: every tensor of a sample once fairseq's `Trainer._prepare_sample` returns it
  (on a GPU that is where fairseq moves them: `utils.move_to_cuda`), every `nn.Parameter`, and every
  output of an aten op with a device tensor among its inputs; an explicit copy to the CPU
  (`aten._to_copy` with `device=cpu`) gives a host tensor, counted as a blocking read, or as an
  asynchronous copy when `non_blocking=True` (it waits for nothing);
* reads: `aten._local_scalar_dense` and the data-dependent-size ops above on a device tensor (seen by
  a TorchDispatchMode), and `Tensor.tolist / numpy / __array__ / cpu` of a device tensor (seen by
  wrapping those methods while counting).

Attribution walks the Python stack from the op outwards to the first frame of a known file: this
plugin (`plugin:<file>`), fairseq (`fairseq:<file>`; its meters, which read every logged tensor when
they are smoothed, as `fairseq:logging/meters.py`), the bare loops (`bare`), or torch's autograd
engine (`backward`: the backward kernels of every module's forward). A read inside fairseq's code
called by the plugin is fairseq's.

Per update = (counts of a run of N2 updates - counts of a run of N1) / (N2 - N1): setup, the first
update's lazy state and the end of training cancel out.
"""
import contextlib
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, Optional

import torch
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils.weak import WeakTensorKeyDictionary

aten = torch.ops.aten

# ops whose output size depends on tensor values: on a GPU the host waits for them
SIZE_FROM_DATA = {
    aten.nonzero.default, aten.masked_select.default, aten._unique2.default, aten.unique_dim.default,
    aten.unique_consecutive.default, aten.repeat_interleave.Tensor, aten.nonzero_static.default,
}
BOOL_INDEXED = {aten.index.Tensor, aten.index_put_.default, aten.index_put.default}

_THIS = os.path.abspath(__file__)
_PLUGIN = os.path.dirname(os.path.dirname(os.path.dirname(_THIS))) + os.sep  # awd_fairseq/
_BENCH = os.path.dirname(_THIS) + os.sep
_TORCH = os.path.dirname(torch.__file__) + os.sep
_AUTOGRAD = os.path.join(_TORCH, "autograd") + os.sep


def _fairseq_roots():
    roots = []
    for name in ("fairseq", "fairseq_cli"):
        module = sys.modules.get(name)
        if module is None:
            try:
                module = __import__(name)
            except ImportError:
                continue
        roots.append((name, os.path.dirname(os.path.abspath(module.__file__)) + os.sep))
    return roots


@dataclass
class Counts:
    ops: Counter = field(default_factory=Counter)  # label -> aten ops
    reads: Counter = field(default_factory=Counter)  # (label, where) -> blocking device-to-host reads
    async_copies: Counter = field(default_factory=Counter)  # (label, where) -> non-blocking copies to the host

    def __sub__(self, other: "Counts") -> "Counts":
        return Counts(self.ops - other.ops, self.reads - other.reads, self.async_copies - other.async_copies)

    def per(self, n: int) -> Dict[str, Dict]:
        """{"ops": {label: ops / n}, "reads": {(label, where): reads / n}, ...}."""
        return {name: {k: v / n for k, v in getattr(self, name).items()} for name in ("ops", "reads", "async_copies")}


class OpCounter(TorchDispatchMode):
    """A dispatch mode counting ops and reads (module docstring); use `with counter.counting():`."""

    def __init__(self):
        super().__init__()
        self.counts = Counts()
        self.device = WeakTensorKeyDictionary()  # tensors that would live on the GPU -> True
        self._fairseq = _fairseq_roots()

    # -- which tensors are on the device ----------------------------------------------------

    def is_device(self, t) -> bool:
        return isinstance(t, torch.Tensor) and (isinstance(t, nn.Parameter) or t in self.device)

    def mark(self, tree) -> None:
        """Mark every tensor in a (nested) sample as a device tensor."""
        for leaf in pytree.tree_leaves(tree):
            if isinstance(leaf, torch.Tensor):
                self.device[leaf] = True

    # -- attribution ---------------------------------------------------------------------------

    def label(self, path: str) -> Optional[str]:
        if path == _THIS:
            return None
        if path.startswith(_BENCH):
            return "bare"
        if path.startswith(_PLUGIN):
            return "plugin:" + path[len(_PLUGIN):]
        for name, root in self._fairseq:
            if path.startswith(root):
                return f"{name}:{path[len(root):]}"
        if path.startswith(_AUTOGRAD):
            return "backward"
        return None

    def where(self):
        """(label, "file:line function") of the innermost frame from a known file."""
        frame = sys._getframe(2)
        while frame is not None:
            label = self.label(os.path.abspath(frame.f_code.co_filename))
            if label is not None:
                code = frame.f_code
                return label, f"{os.path.basename(code.co_filename)}:{frame.f_lineno} {code.co_name}"
            frame = frame.f_back
        return "other", "?"

    def read(self, kind: str) -> None:
        label, where = self.where()
        self.counts.reads[(label, f"{where} [{kind}]")] += 1

    # -- the dispatch mode ---------------------------------------------------------------------

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = [x for x in pytree.tree_leaves((args, kwargs)) if isinstance(x, torch.Tensor)]
        on_device = any(self.is_device(x) for x in inputs)
        label, where = self.where()
        self.counts.ops[label] += 1
        to_host = func is aten._to_copy.default and kwargs.get("device") is not None \
            and torch.device(kwargs["device"]).type == "cpu"
        if on_device:
            if func is aten._local_scalar_dense.default:
                self.counts.reads[(label, f"{where} [item]")] += 1
            elif func in SIZE_FROM_DATA or (func in BOOL_INDEXED and any(
                    isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in pytree.tree_leaves(args[1:2]))):
                self.counts.reads[(label, f"{where} [{func.__name__}]")] += 1
            elif to_host:
                bucket = self.counts.async_copies if kwargs.get("non_blocking") else self.counts.reads
                bucket[(label, f"{where} [to cpu]")] += 1
        out = func(*args, **kwargs)
        if on_device and not to_host:
            self.mark(out)
        return out

    # -- reads that dispatch nothing on the CPU --------------------------------------------------

    @contextlib.contextmanager
    def _watching_host_reads(self) -> Iterator[None]:
        counter = self
        originals = {name: getattr(torch.Tensor, name) for name in ("tolist", "numpy", "__array__", "cpu")}

        def watched(name: str) -> Callable:
            original = originals[name]

            def method(self, *args, **kwargs):
                if not counter.is_device(self):
                    return original(self, *args, **kwargs)
                counter.read(name)
                with _disable_current_modes():  # the host copy a GPU run would get: not a device tensor
                    result = original(self, *args, **kwargs)
                    return result.clone() if name == "cpu" else result

            return method

        for name in originals:
            setattr(torch.Tensor, name, watched(name))
        try:
            yield
        finally:
            for name, original in originals.items():
                setattr(torch.Tensor, name, original)

    @contextlib.contextmanager
    def _marking_fairseq_samples(self) -> Iterator[None]:
        try:
            from fairseq.trainer import Trainer
        except ImportError:
            yield
            return
        original, counter = Trainer._prepare_sample, self

        def prepare(trainer, *args, **kwargs):
            sample, is_dummy = original(trainer, *args, **kwargs)
            counter.mark(sample)  # where fairseq would have moved it to the GPU
            return sample, is_dummy

        Trainer._prepare_sample = prepare
        try:
            yield
        finally:
            Trainer._prepare_sample = original

    @contextlib.contextmanager
    def counting(self) -> Iterator["OpCounter"]:
        with self._watching_host_reads(), self._marking_fairseq_samples(), self:
            yield self


def count(run: Callable[[OpCounter], None]) -> Counts:
    """The counts of `run(counter)` under a fresh counter (`run` may `counter.mark` its device data)."""
    counter = OpCounter()
    with counter.counting():
        run(counter)
    return counter.counts


def per_update(run: Callable[[int, OpCounter], None], n1: int, n2: int) -> Counts:
    """Counts of `run(n2, counter)` minus those of `run(n1, counter)`: (n2 - n1) updates' worth.
    A first, uncounted `run(1)` takes the one-time work of the process (probes, lazy imports,
    caches) out of both."""
    if not 0 < n1 < n2:
        raise ValueError(f"need 0 < n1 < n2, got {n1}, {n2}")
    run(1, OpCounter())
    return count(lambda c: run(n2, c)) - count(lambda c: run(n1, c))


def fairseq_train(argv) -> None:
    """fairseq-train in this process (so that the counter sees it) with the given arguments."""
    from fairseq import distributed_utils, options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq_cli import train

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, input_args=[str(a) for a in argv])
    distributed_utils.call_main(convert_namespace_to_omegaconf(args), train.main)
