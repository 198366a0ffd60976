"""NT-ASGD as a plain ``torch.optim.Optimizer`` (no fairseq import).

Non-monotonically Triggered ASGD, Merity et al., "Regularizing and Optimizing
LSTM Language Models" (arXiv 1708.02182), Section 3 / Algorithm 1. The
reference, salesforce/awd-lstm-lm ``main.py``, trains with
``torch.optim.SGD(weight_decay=wdecay)`` and, once the non-monotone rule fires
(see ``nonmono.py``), replaces it by ``torch.optim.ASGD(lr=args.lr, t0=0,
lambd=0., weight_decay=wdecay)``, then validates and saves with every weight
swapped for ASGD's running average ``ax``. This class is both phases in one
optimizer, so the switch is a method call rather than a new object.

Step (every phase): ``p <- p - lr * (g + weight_decay * p)``, i.e. exactly
``torch.optim.SGD`` without momentum, with ``lr`` read from ``param_groups``
at that step, so a scheduler or the per-batch lr scaling of the original
(``lr * seq_len / bptt``) acts on the very step it is set for.

Both the step and the averaging are multi-tensor operations (``torch._foreach_add_``,
``torch._foreach_lerp_``): a handful of fused kernels per update on a GPU instead of two or
three per parameter, with each element computed by the same formula as the per-parameter loop.

Averaging convention. Let ``p_0`` be a parameter's value when
``start_averaging()`` is called and ``p_k`` its value right after the k-th
``step()`` since then. After n >= 1 such steps ``num_averaged == n`` and
``ax == (p_1 + ... + p_n) / n`` (kept incrementally as
``ax <- ax + (p_n - ax) / n``); before the first one ``ax == p_0``.
``p_0`` itself is never part of the average.

Differences from ``torch.optim.ASGD(t0=0, lambd=0)`` as the original uses it:

* torch's ``mu`` is 1 for both the first and the second step, so its ``ax``
  after n >= 2 steps is the mean of ``p_2 .. p_n``: ``p_1`` is dropped. We
  average ``p_1 .. p_n``.
* torch computes ``eta`` (the step size) for the *next* step at the end of the
  current one, so an lr written into ``param_groups`` takes effect one step
  late. Here the current ``group["lr"]`` is always used.
* torch only creates ``ax`` for parameters that have a gradient, so the
  original crashed (``KeyError: 'ax'``) swapping in the average of a parameter
  that never got one, and it never stepped the criterion's parameters after
  the switch. Here every parameter of every group is averaged from the
  switch on. A parameter whose ``.grad`` is None at a step is not moved (as in
  SGD) but its current value still enters its average, so all averages count
  the same n iterates. A parameter with no recorded average (e.g. added with
  ``add_param_group`` later) is treated as having held its current value
  since averaging began.
"""

import contextlib
from typing import Any, Dict, Iterator, List

import torch


class NTASGD(torch.optim.Optimizer):
    """SGD with L2 weight decay that, after ``start_averaging()``, keeps a
    uniform running average of the iterates of every parameter.

    Args:
        params: iterable of parameters or of param-group dicts.
        lr: learning rate (read from each group at every step).
        weight_decay: L2 penalty added to the gradient (the recipes use 1.2e-6).
    """

    def __init__(self, params, lr: float, weight_decay: float = 0.0):
        if lr < 0.0:
            raise ValueError(f"invalid learning rate: {lr}")
        if weight_decay < 0.0:
            raise ValueError(f"invalid weight_decay: {weight_decay}")
        self._averaging = False
        self._num_averaged = 0
        self._swapped = False
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))

    @property
    def averaging(self) -> bool:
        """True once ``start_averaging()`` has been called (the ASGD phase)."""
        return self._averaging

    @property
    def num_averaged(self) -> int:
        """Number of steps taken since averaging began (iterates in ``ax``)."""
        return self._num_averaged

    @property
    def swapped(self) -> bool:
        """True while the averages sit in the parameters (see ``swap_averaged``)."""
        return self._swapped

    def _all_params(self) -> Iterator[torch.Tensor]:
        for group in self.param_groups:
            yield from group["params"]

    def _average_of(self, p: torch.Tensor) -> torch.Tensor:
        state = self.state[p]
        if "ax" not in state:
            state["ax"] = p.detach().clone(memory_format=torch.preserve_format)
        return state["ax"]

    @torch.no_grad()
    def start_averaging(self) -> None:
        """Switch to the averaging (ASGD) phase; a no-op if already averaging.

        Every parameter's average starts empty (``num_averaged == 0``, ``ax``
        holding the current value ``p_0`` until the first step replaces it).
        """
        if self._averaging:
            return
        self._averaging = True
        self._num_averaged = 0
        for p in self._all_params():
            self.state[p]["ax"] = p.detach().clone(memory_format=torch.preserve_format)

    @torch.no_grad()
    def step(self, closure=None):
        if self._swapped:
            raise RuntimeError("NTASGD.step() while averaged weights are swapped in; swap back first")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, weight_decay = float(group["lr"]), group["weight_decay"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if any(g.is_sparse for g in grads):
                raise RuntimeError("NTASGD does not support sparse gradients")
            if weight_decay != 0:
                grads = torch._foreach_add(grads, params, alpha=weight_decay)  # g + wd * p
            torch._foreach_add_(params, grads, alpha=-lr)  # p - lr * (g + wd * p)
        self._add_iterate_to_average()
        return loss

    @torch.no_grad()
    def _add_iterate_to_average(self) -> None:
        """After a step: the new iterate joins every parameter's average (when averaging)."""
        if self._averaging:
            self._num_averaged += 1
            weight = 1.0 / self._num_averaged  # lerp with weight 1 is an exact copy
            params = list(self._all_params())
            torch._foreach_lerp_([self._average_of(p) for p in params], params, weight)

    def averaged_params(self) -> List[torch.Tensor]:
        """Copies of the averages, one per parameter in ``param_groups`` order."""
        if not self._averaging:
            raise RuntimeError("NTASGD is not averaging yet; call start_averaging()")
        # while swapped the averages live in the parameters themselves
        return [(p if self._swapped else self._average_of(p)).detach().clone() for p in self._all_params()]

    @torch.no_grad()
    def swap_averaged(self) -> None:
        """Exchange each parameter with its average, in place; calling it again
        restores the raw iterate bit for bit."""
        if not self._averaging:
            raise RuntimeError("NTASGD is not averaging yet; call start_averaging()")
        for p in self._all_params():
            ax = self._average_of(p)
            raw = p.detach().clone()
            p.copy_(ax)
            ax.copy_(raw)
        self._swapped = not self._swapped

    @contextlib.contextmanager
    def use_averaged(self) -> Iterator[None]:
        """Context in which the parameters hold their averages (for validation
        or saving); a no-op before averaging starts, like the original."""
        if not self._averaging:
            yield
            return
        self.swap_averaged()
        try:
            yield
        finally:
            self.swap_averaged()

    def state_dict(self) -> Dict[str, Any]:
        """The standard optimizer state (per-parameter ``ax`` tensors and the
        param groups) plus ``nt_asgd``: a dict of python scalars."""
        state_dict = super().state_dict()
        state_dict["nt_asgd"] = {
            "averaging": self._averaging,
            "num_averaged": self._num_averaged,
            "swapped": self._swapped,
        }
        return state_dict

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop("nt_asgd", {})  # absent in a plain SGD state dict
        super().load_state_dict(state_dict)
        self._averaging = bool(extra.get("averaging", False))
        self._num_averaged = int(extra.get("num_averaged", 0))
        self._swapped = bool(extra.get("swapped", False))
