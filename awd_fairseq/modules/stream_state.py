"""Recurrent state carried from one BPTT window to the next (Merity et al. 2017, sec. 4.1; the
`hidden = repackage_hidden(hidden)` of salesforce/awd-lstm-lm main.py), made explicit.

Life cycle, for one split read as `B` contiguous streams (see tasks/bptt_dataset.py):

* the task owns one `StreamState` per split and per pass over it;
* before a window whose inputs start at stream offset `start`, the task calls `seek(start)`:
  the state saved at that offset becomes `.hidden` (`None`, i.e. zeros, at offset 0, which is
  how every epoch and every validation pass starts afresh);
* the model reads `.hidden` and writes its new, detached state back into `.hidden`;
* after the window, the task calls `commit(end)`, which files `.hidden` under offset `end`.

The states of the last `history` window starts are kept, so a step that fairseq runs again (the
NaN detector's replay, an AMP retry of a whole `--update-freq` group) reads the same state as the
first time and cannot advance the stream twice. The state is a flat ``Dict[str, Tensor]`` whose tensors have the batch
(stream) dimension first, the layout fairseq's incremental decoding uses too.
"""
import logging
from typing import Dict, Optional

from torch import Tensor

logger = logging.getLogger(__name__)

State = Dict[str, Tensor]


class StreamState:
    def __init__(self, history: int = 16) -> None:
        self.history = history
        self.hidden: Optional[State] = None
        self._saved: Dict[int, Optional[State]] = {}
        self._start: Optional[int] = None

    def seek(self, start: int) -> None:
        """Load the state that precedes the window starting at stream offset `start`."""
        if start == 0:
            self._saved = {0: None}
        elif start not in self._saved:
            logger.warning(
                "no recurrent state saved for stream offset %d (windows out of order, or a "
                "resumed run); starting this window from zeros", start
            )
            self._saved[start] = None
        self._start = start
        self.hidden = self._saved[start]

    def commit(self, end: int) -> None:
        """File the state the model left in `.hidden` as the state preceding offset `end`."""
        if self._start is None:
            raise RuntimeError("StreamState.commit() called before seek()")
        self._saved[end] = self.hidden
        for offset in sorted(self._saved)[: -self.history]:
            del self._saved[offset]

    def state_dict(self) -> Dict[int, Optional[State]]:
        return dict(self._saved)

    def load_state_dict(self, saved: Dict[int, Optional[State]]) -> None:
        self._saved = dict(saved)
        self._start, self.hidden = None, None


def detach_state(state: State) -> State:
    return {k: v.detach() for k, v in state.items()}
