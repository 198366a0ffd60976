"""Recurrent state carried from one BPTT window to the next (Merity et al. 2017, sec. 4.1; the
`hidden = repackage_hidden(hidden)` of salesforce/awd-lstm-lm main.py), made explicit.

A split is read as `B` contiguous streams, window after window (see tasks/bptt_dataset.py). The
state at the end of a window is the start of the next window of the same streams. It travels by
one channel only: the `StreamState` object handed to the model in `net_input["stream_state"]`.
The model reads `.hidden` and writes its new state back into `.hidden`; it returns nothing else.

Who does what, and when:

    ============  ==========================  ============================  ===================
                  training (fairseq-train)    validation (fairseq-train)    fairseq-eval-lm
    ============  ==========================  ============================  ===================
    creates       the task: one StreamState   the task: one StreamState     the iterator
                  for the train subset        for validation, reused by     (StatefulWindow-
                  (tasks/split_streams.py)    every valid subset's pass     Iterator, below),
                                              (tasks/split_streams.py)      one per pass
    carries       the task's train_step:      the task's valid_step:        the iterator, around
                  seek(start), the model      seek / model / commit as in   each window it
                  runs, commit(end)           training                      yields
    detaches      the model, when it writes `.hidden` (models/recurrent_decoder.py), always
    resets        `seek(0)`: every epoch, every validation pass and every eval-lm pass start
                  from zeros (`None`); `--reset-state-every-window` skips the carrying in training
    saves         the task's get_checkpoint_  never (every validation       never
                  dict: the last committed    starts from zeros)
                  state, rank 0's columns,
                  restored on a mid-epoch
                  resume with the same layout
    ============  ==========================  ============================  ===================

The states of the last `history` window starts are kept, so a step that fairseq runs again (the
NaN detector's replay, an AMP retry of a whole `--update-freq` group) reads the same state as the
first time and cannot advance the stream twice. The state is a flat ``Dict[str, Tensor]`` whose
tensors have the batch (stream) dimension first, the layout fairseq's incremental decoding uses
too. Generation (fairseq-interactive, the hub interface, scripts/generate.py) does not use a
StreamState: fairseq's `incremental_state` carries the state there.
"""
import contextlib
import logging
from typing import Dict, Iterable, Iterator, Optional, Tuple

import torch
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

    @contextlib.contextmanager
    def window(self, start: int, end: int) -> Iterator["StreamState"]:
        """`seek(start)`, the caller runs the model on the window, `commit(end)`."""
        self.seek(start)
        yield self
        self.commit(end)

    def state_dict(self) -> Dict[int, Optional[State]]:
        return dict(self._saved)

    def load_state_dict(self, saved: Dict[int, Optional[State]]) -> None:
        self._saved = dict(saved)
        self._start, self.hidden = None, None


def window_bounds(sample: dict) -> Optional[Tuple[int, int]]:
    """The stream offsets `(start, end)` of a window's inputs, or None for a sample without them.

    The BPTT dataset gives them as Python ints (tasks/bptt_dataset.py), which fairseq leaves on the
    host when it moves a sample to the GPU: reading them costs nothing. A tensor (a sample built by
    hand) is read as well, at the cost of a device-to-host read if it is on a GPU.
    """
    window = sample.get("window")
    if window is None:
        return None
    if torch.is_tensor(window):
        window = window.tolist()
    start, end = window
    return int(start), int(end)


def detach_state(state: State) -> State:
    return {k: v.detach() for k, v in state.items()}


class StatefulWindowIterator:
    """fairseq-eval-lm's windows, one at a time, each with this iterator's StreamState attached.

    Owns the state of one pass: fairseq-eval-lm's scorer calls `model(**sample["net_input"])`
    and keeps only the scores, so the state cannot come back through the scorer; the model
    writes it into the StreamState it was handed, and this iterator commits it when the scorer
    asks for the next window. `batches` yields samples with a `"window"` (start, end)
    (tasks/bptt_dataset.py).
    """

    def __init__(self, batches: Iterable[dict], state: Optional[StreamState] = None):
        self.batches = batches
        self.state = StreamState() if state is None else state
        self.n = getattr(batches, "n", 0)  # fairseq's progress bar reads it

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[dict]:
        for sample in self.batches:
            start, end = window_bounds(sample)
            with self.state.window(start, end):
                sample["net_input"]["stream_state"] = self.state
                yield sample  # the consumer runs the model here
