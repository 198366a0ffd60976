"""fairseq-eval-lm's side of every task here: its calls checked, a split read as contiguous streams
in fixed windows, in order, each window with the pass's recurrent state and its targets attached.

fairseq-eval-lm's scorer calls `model(**sample["net_input"])` and keeps only the scores, so the
state cannot come back through it: the model writes it into the `StreamState` it is handed, and
`StatefulWindowIterator` (the owner of one pass's state, see modules/stream_state.py) commits it
when the scorer asks for the next window.
"""
from typing import Iterable, Iterator, Optional

from torch import Tensor

from ..modules.stream_state import StreamState
from .bptt_dataset import window_batch_iterator
from .bptt_schedule import fixed_windows
from .scoring import TargetsInInput


def check_eval_lm_call(task: str, context_window: int, num_shards: int, batch_size=None, streams_hint: str = "") -> None:
    """Refuse what fairseq-eval-lm may pass that a stream task does not use, naming the flag."""
    if context_window > 0:
        raise ValueError(
            f"--context-window does not apply: {task} carries the recurrent state from window to window "
            "(models without state: --stream-context under awd_cache_pointer / awd_dynamic_eval)"
        )
    if num_shards > 1:
        raise ValueError(f"fairseq-eval-lm with {task} runs on one process (the stream is read in order)")
    if batch_size is not None:
        raise ValueError(f"fairseq-eval-lm's --batch-size {batch_size} is not used by {task}: {streams_hint}")


def fixed_window_batches(stream: Tensor, streams: int, bptt: int, length_flag: str = "--bptt") -> Iterable[dict]:
    """One pass over `stream` as `streams` contiguous streams in windows of `bptt`, in order.

    The windows are slices of one in-memory tensor: a loader process (eval-lm's --num-workers)
    would only add a shared-memory hand-over per window, so none is used."""
    itr = window_batch_iterator(stream, streams, bptt, lambda rows, _epoch: fixed_windows(rows, bptt),
                                num_workers=0, length_flag=length_flag)
    return itr.next_epoch_itr(shuffle=False)


class StatefulWindowIterator:
    """Windows one at a time, each with this iterator's StreamState in `net_input["stream_state"]`;
    `batches` yields samples with a `"window"` (start, end) (tasks/bptt_dataset.py)."""

    def __init__(self, batches: Iterable[dict], state: Optional[StreamState] = None):
        self.batches = batches
        self.state = StreamState() if state is None else state
        self.n = getattr(batches, "n", 0)  # fairseq's progress bar reads it

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[dict]:
        for sample in self.batches:
            start, end = sample["window"]
            with self.state.window(start, end):
                sample["net_input"]["stream_state"] = self.state
                yield sample  # the consumer runs the model here


def scored_windows(batches: Iterable[dict]) -> TargetsInInput:
    """The windows with a fresh pass state and the targets in net_input (tasks/scoring.py)."""
    return TargetsInInput(StatefulWindowIterator(batches))
