"""Window schedules over a batchified stream (salesforce/awd-lstm-lm main.py `train()` and
`evaluate()`), as pure functions of their inputs so that every rank, every data-loader worker
and a resumed run compute the same windows.

A window is `(start, length)`: inputs are rows `start .. start+length-1` of the (N, B) stream
matrix and targets the rows one further down (see bptt_dataset.py).
"""
from typing import List, Optional, Tuple

import numpy as np

Window = Tuple[int, int]
MIN_SEQ_LEN = 5  # the original: `max(5, int(np.random.normal(bptt, 5)))`
SEQ_LEN_STD = 5.0
P_FULL_BPTT = 0.95


def variable_windows(
    num_rows: int, bptt: int, seed: int, epoch: int, max_extra: Optional[int] = None
) -> List[Window]:
    """Training windows of one epoch, as main.py draws them:

        while i < N - 1 - 1:
            bptt' = bptt with probability 0.95, else bptt / 2
            seq_len = max(5, int(normal(bptt', 5)))      # optionally min(seq_len, bptt + max_extra)
            seq_len = min(seq_len, N - 1 - i)            # get_batch
            i += seq_len

    The draws come from a generator seeded by (seed, epoch) instead of the global numpy state.
    """
    rng = np.random.default_rng([seed, epoch])
    windows, i = [], 0
    while i < num_rows - 1 - 1:
        base = bptt if rng.random() < P_FULL_BPTT else bptt / 2.0
        seq_len = max(MIN_SEQ_LEN, int(rng.normal(base, SEQ_LEN_STD)))
        if max_extra is not None:
            seq_len = min(seq_len, bptt + max_extra)
        seq_len = min(seq_len, num_rows - 1 - i)
        windows.append((i, seq_len))
        i += seq_len
    return windows


def fixed_windows(num_rows: int, bptt: int) -> List[Window]:
    """Evaluation windows: `for i in range(0, N - 1, bptt)`, the last one shortened."""
    return [(i, min(bptt, num_rows - 1 - i)) for i in range(0, num_rows - 1, bptt)]
