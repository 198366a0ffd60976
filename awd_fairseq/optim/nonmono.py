"""The non-monotone trigger of NT-ASGD (no torch, no fairseq).

Merity et al., "Regularizing and Optimizing LSTM Language Models"
(arXiv 1708.02182), Algorithm 1: switch from SGD to averaged SGD once the
validation metric fails to improve for ``n`` (``nonmono``) checks. The rule
reproduced here is the one salesforce/awd-lstm-lm ``main.py`` actually runs
after each epoch's validation, in this order::

    if 't0' not in optimizer.param_groups[0] and (len(best_val_loss) > args.nonmono
            and val_loss > min(best_val_loss[:-args.nonmono])):
        optimizer = torch.optim.ASGD(...)          # the switch
    ...
    best_val_loss.append(val_loss)                 # only after the check

So at epoch e (1-based) the history holds the e - 1 earlier losses, and the
switch happens when ``e - 1 > n`` and the current loss is strictly worse than
the best loss of epochs 1 .. e - 1 - n, i.e. of every epoch except the current
one and the n before it. The earliest epoch that can fire is therefore
``e = n + 2`` (epoch 7 for the default n = 5), where the loss is compared with
epoch 1's alone. A loss equal to that minimum does not fire (strict ``>``), so
a non-increasing sequence never fires.

Once it has fired the original takes the ASGD branch and stops appending to
the history; ``observe`` mirrors that: it returns True exactly once, on the
switching epoch, and ``triggered`` stays True afterwards.
"""

from typing import Any, Dict, List


class NonMonotoneTrigger:
    """Decides, once per validation, whether NT-ASGD should start averaging.

    Args:
        nonmono: the paper's n, the number of most recent earlier losses left
            out of the comparison (must be >= 1; the original's
            ``min(best_val_loss[:-0])`` would fail on an empty list).
    """

    def __init__(self, nonmono: int = 5):
        if nonmono < 1:
            raise ValueError(f"nonmono must be >= 1, got {nonmono}")
        self.nonmono = nonmono
        self.history: List[float] = []
        self.num_observed = 0
        self.triggered = False

    def rule_fires(self, val_loss: float) -> bool:
        """The original condition, evaluated against the current history."""
        history = self.history
        return len(history) > self.nonmono and val_loss > min(history[: -self.nonmono])

    def observe(self, val_loss: float) -> bool:
        """Record one validation loss; True exactly when averaging should start."""
        self.num_observed += 1
        if self.triggered:
            return False
        val_loss = float(val_loss)
        fire = self.rule_fires(val_loss)
        self.history.append(val_loss)
        self.triggered = fire
        return fire

    def state_dict(self) -> Dict[str, Any]:
        return {
            "nonmono": self.nonmono,
            "history": list(self.history),
            "num_observed": self.num_observed,
            "triggered": self.triggered,
        }

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore history and flags; ``nonmono`` keeps the value given to the
        constructor (the current configuration wins)."""
        self.history = [float(v) for v in state_dict["history"]]
        self.num_observed = int(state_dict["num_observed"])
        self.triggered = bool(state_dict["triggered"])
