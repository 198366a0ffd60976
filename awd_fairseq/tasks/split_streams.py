"""The task's recurrent state in fairseq-train: one StreamState per split (the training subset
and each validation subset), carried around every window the task's train_step / valid_step
runs, and the training stream's state in the checkpoint (modules/stream_state.py says who
creates, carries, detaches, resets and saves the state, everywhere).

Checkpoints. fairseq-train restores, together with the epoch iterator's position (and only then:
not under --reset-dataloader), the dict a task returns from `get_checkpoint_dict`, by handing it
to `set_checkpoint_dict` (fairseq's main branch, checkpoint_utils.save/load_checkpoint).
`task.state_dict()`, which fairseq also saves, is only read back by model loading (eval-lm), so
the stream stays out of it. On a fairseq without these hooks a mid-epoch resume starts the state
from zeros (StreamState warns). Only the saving process (rank 0) calls get_checkpoint_dict, so a
checkpoint holds rank 0's columns: a resumed run restores them where the layout (streams, ranks,
rank) is the same, and the other ranks, or a run with another --batch-size, start from zeros.
"""
import contextlib
import logging
from typing import Dict, Iterator, Optional

from ..modules.stream_state import StreamState, window_bounds

logger = logging.getLogger(__name__)


def carries_stream_state(model) -> bool:
    """True for decoders that read and write a StreamState (awd_lstm, qrnn), False for
    stateless ones (fairseq's transformer_lm)."""
    return getattr(model.decoder, "supports_stream_state", False)


class SplitStreams:
    def __init__(self, train_subset: str):
        self.train_subset = train_subset
        self.states: Dict[str, StreamState] = {}
        # which columns of the stream this process reads in training (set by the train iterator)
        self.train_layout: Optional[Dict[str, int]] = None

    def state(self, split: str) -> StreamState:
        if split not in self.states:
            self.states[split] = StreamState()
        return self.states[split]

    def set_train_layout(self, streams: int, world_size: int, rank: int) -> None:
        self.train_layout = {"streams": int(streams), "world_size": int(world_size), "rank": int(rank)}

    @contextlib.contextmanager
    def window(self, sample: dict, model, split: str) -> Iterator[None]:
        """Around one window of `split`: attach the split's state to the sample, commit it after."""
        if not carries_stream_state(model) or "window" not in sample:
            yield
            return
        start, end = window_bounds(sample)
        state = self.state(split)
        with state.window(start, end):
            sample["net_input"]["stream_state"] = state
            yield

    # -- the training stream in the checkpoint (see the module docstring) ------------------

    def checkpoint_dict(self) -> dict:
        train = self.states.get(self.train_subset)
        saved = train.state_dict() if train is not None else {}
        if not saved or self.train_layout is None:
            return {}
        # the resumed run starts at the last committed offset: the older history is not needed
        last = max(saved)
        hidden = saved[last]
        hidden = None if hidden is None else {n: t.detach().cpu() for n, t in hidden.items()}
        return {"train_stream": {int(last): hidden}, "layout": dict(self.train_layout)}

    def load_checkpoint_dict(self, saved: dict) -> None:
        if saved.get("train_stream") is None:
            return
        if saved.get("layout") != self.train_layout:
            logger.warning(
                "the checkpoint's recurrent state is for stream layout %s, this process reads %s: "
                "the resumed epoch starts it from zeros", saved.get("layout"), self.train_layout,
            )
            return
        self.state(self.train_subset).load_state_dict(saved["train_stream"])
