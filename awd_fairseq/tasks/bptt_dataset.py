"""A split's token stream laid out as contiguous streams and cut into BPTT windows.

fairseq-preprocess gives the split as lines, each ending in `</s>` (the original's `<eos>`).
We read them in order into one stream, put one `</s>` in front so that the first real token is
scored too, and lay the stream out as in the original `batchify` (and pytorch/examples'
word_language_model), with `B = streams per rank x ranks` columns:

    stream:  a b c d e f g h i j k l m n o p q r s t u v w x (y z: dropped, N = len // B)

    B = 4    col 0  col 1  col 2  col 3        rank r trains on columns [r*b, (r+1)*b)
    row 0      a      g      m      s
    row 1      b      h      n      t          a window (start=1, length=2) gives
    row 2      c      i      o      u            inputs  rows 1..2:  b h n t / c i o u
    row 3      d      j      p      v            targets rows 2..3:  c i o u / d j p v
    row 4      e      k      q      w
    row 5      f      l      r      x

Validation lays the stream out once as `--eval-batch-size` columns, whatever the number of ranks,
and each rank reads a contiguous share of them (`shared_columns`): fairseq sums the ranks' losses,
so the validation loss is that of one process reading all the columns.

Each column is read top to bottom over the epoch, one window after the other, so the recurrent
state at the end of a window is the right start for the next window of the same column.
The dataset is indexed by windows `(start, length)`; batches hold exactly one window, and
`window_batch_iterator` serves them in stream order through fairseq's EpochBatchIterator.
"""
from typing import Callable, List, Optional, Tuple

import torch
from fairseq.data import FairseqDataset, iterators
from torch import Tensor

from ..fairseq_compat import epoch_iterator_kwargs
from .bptt_schedule import Window


def batchify(stream: Tensor, num_streams: int) -> Tensor:
    """(len,) -> (N, num_streams): column j is stream[j*N:(j+1)*N], the tail is dropped."""
    rows = stream.numel() // num_streams
    return stream[: rows * num_streams].view(num_streams, rows).t().contiguous()


def shared_columns(num_streams: int, rank: int, world_size: int) -> Tuple[int, int]:
    """The columns `[lo, hi)` rank `rank` reads of ONE `num_streams`-column layout shared by all
    ranks (validation): contiguous shares, as equal as they can be. Summing the ranks' losses
    then gives the loss of one process reading all `num_streams` columns."""
    if num_streams < world_size:
        raise ValueError(
            f"{num_streams} evaluation streams cannot be shared by {world_size} processes: raise "
            f"--eval-batch-size to at least {world_size}"
        )
    return rank * num_streams // world_size, (rank + 1) * num_streams // world_size


class BPTTWindowDataset(FairseqDataset):
    """Windows of the stream laid out as `streams_per_rank x world_size` columns, of which this
    rank reads its own `streams_per_rank` (training) or, if given, the columns `[lo, hi)`."""

    def __init__(
        self, stream: Tensor, streams_per_rank: int, rank: int = 0, world_size: int = 1, bptt: int = 70,
        columns: Optional[Tuple[int, int]] = None,
    ):
        super().__init__()
        matrix = batchify(stream, streams_per_rank * world_size)
        lo, hi = columns if columns is not None else (rank * streams_per_rank, (rank + 1) * streams_per_rank)
        self.data = matrix[:, lo:hi].contiguous()  # (N, b)
        self.bptt = bptt

    @property
    def num_rows(self) -> int:
        return self.data.size(0)

    def __getitem__(self, window: Tuple[int, int]):
        start, length = window
        return {
            "start": start,
            "source": self.data[start : start + length],  # (T, b)
            "target": self.data[start + 1 : start + 1 + length],  # (T, b)
        }

    def __len__(self) -> int:
        return self.num_rows

    def collater(self, items: List[dict]):
        if len(items) != 1:
            raise ValueError("a BPTT batch holds exactly one window")
        item = items[0]
        src = item["source"].t().contiguous()  # (b, T)
        b, length = src.shape
        return {
            "id": torch.arange(b),
            "nsentences": b,
            "ntokens": b * length,
            "net_input": {"src_tokens": src, "src_lengths": torch.full((b,), length, dtype=torch.long)},
            "target": item["target"].t().contiguous(),
            # stream offsets of the window's inputs; the task seeks / commits its StreamState here.
            # Python ints, not a tensor: fairseq moves a sample's tensors to the GPU, where reading
            # them back would make the host wait for the GPU once per window
            "window": (item["start"], item["start"] + length),
            # the original scales the learning rate of a window by seq_len / bptt
            "lr_scale": length / self.bptt,
        }

    def num_tokens(self, index) -> int:
        return index[1] * self.data.size(1)

    def size(self, index) -> int:
        return index[1]


def window_batch_iterator(
    stream: Tensor,
    streams_per_rank: int,
    bptt: int,
    schedule: Callable[[int, int], List[Window]],
    rank: int = 0,
    world_size: int = 1,
    seed: int = 1,
    num_workers: int = 0,
    epoch: int = 1,
    buffer_size: int = 0,
    columns: Optional[Tuple[int, int]] = None,
) -> iterators.EpochBatchIterator:
    """fairseq's epoch iterator over this rank's windows, one per batch, in stream order.

    `schedule(num_rows, epoch)` gives an epoch's windows (bptt_schedule.py); it is a pure
    function, so data-loader workers and a resumed iterator see the same windows.
    """
    dataset = BPTTWindowDataset(stream, streams_per_rank, rank=rank, world_size=world_size, bptt=bptt, columns=columns)
    rows = dataset.num_rows
    if rows - 1 < bptt:
        raise ValueError(
            f"the split has {stream.numel()} tokens: as {streams_per_rank * world_size} streams of "
            f"{rows} it is shorter than one window (--bptt {bptt}); lower "
            "--bptt or the batch size (--batch-size / --eval-batch-size / --test-batch-size)"
        )

    def batches(_dataset, ep):
        return [[w] for w in schedule(rows, ep)]

    return iterators.EpochBatchIterator(
        dataset=dataset,
        collate_fn=dataset.collater,
        batch_sampler=batches,
        seed=seed,
        num_shards=1,  # each rank reads its own columns of the stream (see the drawing above)
        shard_id=0,
        num_workers=num_workers,
        epoch=epoch,
        buffer_size=buffer_size,
        disable_shuffling=True,  # windows must come in stream order
        **epoch_iterator_kwargs(reuse_dataloader=False),  # a fresh loader per epoch: the windows change
    )
