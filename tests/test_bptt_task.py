"""The stateful BPTT task against the original's formulas written out (salesforce/awd-lstm-lm
main.py `batchify`, `get_batch`, `train()`), and its state handling."""
import numpy as np
import pytest
import torch
from fairseq.data import Dictionary

from awd_fairseq.modules.stream_state import StreamState
from awd_fairseq.tasks.awd_language_modeling import AWDLanguageModelingConfig, AWDLanguageModelingTask
from awd_fairseq.tasks.bptt_dataset import BPTTWindowDataset, batchify
from awd_fairseq.tasks.bptt_schedule import fixed_windows, variable_windows


def test_batchify_is_the_originals_column_layout():
    stream = torch.arange(103)
    data = batchify(stream, 4)
    rows = 103 // 4
    assert data.shape == (rows, 4)
    for i in range(rows):
        for j in range(4):
            assert data[i, j] == stream[j * rows + i]  # column j is the j-th contiguous piece


def test_ranks_read_disjoint_columns_of_the_global_layout():
    stream = torch.arange(1000)
    full = batchify(stream, 6)
    parts = [BPTTWindowDataset(stream, 3, rank=r, world_size=2).data for r in range(2)]
    assert torch.equal(torch.cat(parts, dim=1), full)


def test_window_inputs_and_targets_are_get_batch():
    ds = BPTTWindowDataset(torch.arange(200), 4, bptt=7)
    sample = ds.collater([ds[(10, 7)]])
    src, tgt = sample["net_input"]["src_tokens"], sample["target"]
    # get_batch(source, i=10, seq_len=7): data = source[i:i+7], target = source[i+1:i+8]
    assert torch.equal(src, ds.data[10:17].t()) and torch.equal(tgt, ds.data[11:18].t())
    assert sample["window"] == (10, 17) and sample["lr_scale"] == 1.0


# -- the original's training loop (salesforce/awd-lstm-lm main.py `train()`, utils.py), written
# -- as it is written there; `np_random` stands for the `np.random` module it draws from: ours is
# -- a generator seeded by (seed, epoch), so every rank, worker and resumed run draws the same.


def original_batchify(data, bsz):
    nbatch = data.size(0) // bsz
    data = data.narrow(0, 0, nbatch * bsz)
    return data.view(bsz, -1).t().contiguous()


def original_get_batch(source, i, bptt, seq_len=None):
    seq_len = min(seq_len if seq_len else bptt, len(source) - 1 - i)
    data = source[i : i + seq_len]
    target = source[i + 1 : i + 1 + seq_len]
    return data, target


def original_train_batches(train_data, bptt, np_random):
    """[(data, targets, seq_len)] of one epoch; seq_len is the drawn length the lr is scaled by."""
    batches = []
    batch, i = 0, 0
    while i < train_data.size(0) - 1 - 1:
        bptt_ = bptt if np_random.random() < 0.95 else bptt / 2.0
        # Prevent excessively small or negative sequence lengths
        seq_len = max(5, int(np_random.normal(bptt_, 5)))
        data, targets = original_get_batch(train_data, i, bptt, seq_len=seq_len)
        batches.append((data, targets, seq_len))
        batch += 1
        i += seq_len
    return batches


@pytest.mark.parametrize("rows,bptt", [(5000, 70), (3000, 6), (400, 35)])
def test_variable_schedule_matches_the_original_loop(rows, bptt):
    source = torch.arange(rows).unsqueeze(1)  # (N, 1): row r holds r
    for seed, epoch in [(3, 2), (1111, 1), (0, 7)]:
        got = variable_windows(rows, bptt, seed=seed, epoch=epoch)
        expected = original_train_batches(source, bptt, np.random.default_rng([seed, epoch]))
        assert len(got) == len(expected)
        for (start, length), (data, _targets, _seq_len) in zip(got, expected):
            assert (start, length) == (int(data[0, 0]), data.size(0))


def test_the_task_serves_the_original_batches(task):
    """Through the task's iterator: the stream, batchified, cut where main.py cuts it."""
    streams, seed = 4, 5
    train_data = original_batchify(task.dataset("train").tokens, streams)
    for epoch in (1, 2):
        itr = task.get_batch_iterator(task.dataset("train"), max_sentences=streams, seed=seed, epoch=epoch)
        samples = list(itr.next_epoch_itr(shuffle=True))
        expected = original_train_batches(train_data, 20, np.random.default_rng([seed, epoch]))
        assert len(samples) == len(expected)
        for n, (sample, (data, targets, seq_len)) in enumerate(zip(samples, expected)):
            assert torch.equal(sample["net_input"]["src_tokens"], data.t())
            assert torch.equal(sample["target"], targets.t())
            if n < len(expected) - 1:  # the last: its clipped length here, the drawn one there
                assert sample["lr_scale"] == seq_len / 20


def test_variable_schedule_statistics_and_seeding():
    lengths = [l for s in range(20) for _, l in variable_windows(20000, 70, seed=s, epoch=1)[:-1]]
    halves = np.mean([l < 52 for l in lengths])  # N(35, 5) draws are below 52, N(70, 5) ones above
    assert 0.03 < halves < 0.07 and min(lengths) >= 5
    assert variable_windows(3000, 70, 1, 1) == variable_windows(3000, 70, 1, 1)
    assert variable_windows(3000, 70, 1, 1) != variable_windows(3000, 70, 1, 2)
    assert max(l for _, l in variable_windows(20000, 70, 0, 1, max_extra=3)) <= 73


def test_fixed_schedule_is_range_bptt():
    assert fixed_windows(23, 10) == [(0, 10), (10, 10), (20, 2)]


def test_stream_state_replay_reads_the_same_state():
    state = StreamState(history=4)
    h = lambda v: {"x": torch.tensor([float(v)])}  # noqa: E731
    state.seek(0)
    assert state.hidden is None
    state.hidden = h(1)
    state.commit(10)
    for _ in range(2):  # a step run twice (NaN detector, AMP retry) starts from the same state
        state.seek(10)
        assert state.hidden["x"].item() == 1
        state.hidden = h(2)
        state.commit(20)
    state.seek(20)
    assert state.hidden["x"].item() == 2
    state.seek(0)  # a new pass starts from zeros
    assert state.hidden is None


@pytest.fixture
def task(tiny_bin):
    cfg = AWDLanguageModelingConfig(data=str(tiny_bin), bptt=20, seed=1, train_subset="train")
    t = AWDLanguageModelingTask.setup_task(cfg)
    for split in ("train", "valid"):
        t.load_dataset(split)
    return t


def _windows(itr):
    return [tuple(s["window"]) for s in itr]


def test_stream_is_eos_then_every_line(task, tiny_bin):
    from fairseq.data import data_utils

    lines = data_utils.load_indexed_dataset(str(tiny_bin / "train"), task.dictionary)
    expected = torch.cat([torch.tensor([task.dictionary.eos()])] + [lines[i] for i in range(len(lines))])
    assert torch.equal(task.dataset("train").tokens, expected)


def test_workers_and_resume_keep_the_stream_order(task):
    ds = task.dataset("train")

    def itr(workers, epoch=1):
        return task.get_batch_iterator(ds, max_sentences=10, seed=1, num_workers=workers, epoch=epoch)

    reference = _windows(itr(0).next_epoch_itr(shuffle=True))
    assert _windows(itr(2).next_epoch_itr(shuffle=True)) == reference
    # interrupted after 5 windows and resumed from the iterator state fairseq checkpoints
    first = itr(0)
    part = first.next_epoch_itr(shuffle=True)
    seen = [tuple(next(part)["window"]) for _ in range(5)]
    resumed = itr(0)
    resumed.load_state_dict(first.state_dict())
    assert seen + _windows(resumed.next_epoch_itr(shuffle=True)) == reference
    # epochs differ, and a fresh iterator for epoch 2 equals the schedule of epoch 2
    assert _windows(itr(0, epoch=2).next_epoch_itr(shuffle=True)) != reference


def test_missing_batch_size_and_valid_defaults(task):
    with pytest.raises(ValueError, match="--batch-size"):
        task.get_batch_iterator(task.dataset("train"), max_sentences=None)
    sample = next(task.get_batch_iterator(task.dataset("valid")).next_epoch_itr(shuffle=False))
    assert sample["net_input"]["src_tokens"].shape == (10, 20)  # --eval-batch-size 10, fixed bptt


def test_dictionary_is_read_from_the_data_dir(task, tiny_bin):
    assert len(task.dictionary) == len(Dictionary.load(str(tiny_bin / "dict.txt")))


def test_checkpointed_state_is_restored_only_for_the_same_stream_layout(task):
    """fairseq's rank 0 alone writes checkpoints: another rank, or another --batch-size, must not
    load rank 0's columns (they would carry another text's state)."""
    ds = task.dataset("train")
    task.get_batch_iterator(ds, max_sentences=10, seed=1)  # rank 0 of 1, 10 streams
    stream = task.streams.state("train")
    stream.seek(0)
    stream.hidden = {"0.h": torch.randn(10, 4)}
    stream.commit(20)
    saved = task.get_checkpoint_dict()["AWDLanguageModelingTask"]
    assert saved["layout"] == {"streams": 10, "world_size": 1, "rank": 0}
    assert list(saved["train_stream"]) == [20]  # the last committed offset only

    for kwargs in ({"max_sentences": 10}, {"max_sentences": 10, "num_shards": 2, "shard_id": 1}, {"max_sentences": 5}):
        task.streams.states.clear()
        task.get_batch_iterator(ds, seed=1, **kwargs)
        task.set_checkpoint_dict(saved)
        state = task.streams.state("train")
        state.seek(20)
        if kwargs == {"max_sentences": 10}:
            assert torch.equal(state.hidden["0.h"], saved["train_stream"][20]["0.h"])
        else:
            assert state.hidden is None, kwargs
