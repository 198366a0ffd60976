"""What keeps the training update from waiting for the GPU, checked with the op counter
(awd_fairseq/tools/bench/op_count.py) on the CPU: the criterion's logged scalars leave in one non-blocking
copy and log the values a blocking read gives, the window offsets are Python ints, and a non-finite
loss is read (and named) only in fairseq's replay of the update."""
import logging
import math

import pytest
import torch
from fairseq import metrics

from awd_fairseq.tools.bench.op_count import OpCounter
from awd_fairseq.criterions.awd_split_cross_entropy import AWDSplitCrossEntropyCriterion
from awd_fairseq.modules.host_copy import host_float, to_host
from awd_fairseq.tasks.bptt_dataset import BPTTWindowDataset
from awd_fairseq.tasks.non_finite_loss import NonFiniteLossReport


def reads(counts):
    return sum(counts.reads.values())


def test_the_counter_sees_every_kind_of_read_of_a_device_tensor_and_none_of_a_host_one():
    counter = OpCounter()
    with counter.counting():
        device, host = torch.arange(4.0), torch.arange(4.0)
        counter.mark(device)
        derived = device * 2  # an op's output on the device is on the device
        derived[0].item(), float(derived.sum()), bool(derived[1]), derived.tolist(), derived.numpy(), derived.cpu()
        (derived > 1).nonzero(), derived[derived > 1]
        host.tolist(), host[0].item(), float(host.sum())
    assert reads(counter.counts) == 8
    assert not counter.counts.async_copies


def test_to_host_copies_once_without_a_read_and_gives_the_values_a_read_gives():
    counter = OpCounter()
    with counter.counting():
        values = {"loss": torch.tensor(123.456789), "ar": torch.tensor(0.1) * 3, "tar": torch.tensor(1e-7)}
        counter.mark(values)
        expected = {k: float(v) for k, v in values.items()}  # three blocking reads
        host = to_host(values)
        got = {k: host_float(v) for k, v in host.items()}  # none
    assert got == expected
    assert reads(counter.counts) == 3 and sum(counter.counts.async_copies.values()) == 1
    assert all(v.device.type == "cpu" for v in host.values())


def test_reduce_metrics_logs_the_values_of_the_blocking_reads():
    ln2 = math.log(2)
    logs = []
    for ntokens, loss, ar, tar in ((140, 700.123, 0.37, 0.011), (60, 310.5, 0.52, 0.02)):  # two micro-batches
        logged = to_host({"loss": torch.tensor(loss), "ar": torch.tensor(ar) * ntokens,
                          "tar": torch.tensor(tar) * ntokens})
        logs.append({**logged, "ntokens": ntokens, "nsentences": 20, "sample_size": ntokens})
    with metrics.aggregate() as agg:
        AWDSplitCrossEntropyCriterion.reduce_metrics(logs)
        values = agg.get_smoothed_values()
    f32 = lambda x: float(torch.tensor(x))  # the float32 value the model computed
    assert values["loss"] == round((f32(700.123) + f32(310.5)) / 200 / ln2, 3)
    assert values["ar"] == round((float(torch.tensor(0.37) * 140) + float(torch.tensor(0.52) * 60)) / 200, 4)
    assert values["ppl"] == round(2 ** ((f32(700.123) + f32(310.5)) / 200 / ln2), 3)


def test_windows_are_python_ints():
    ds = BPTTWindowDataset(torch.arange(200), 4)
    sample = ds.collater([ds[(10, 7)]])
    assert sample["window"] == (10, 17) and all(type(x) is int for x in sample["window"])


def test_a_non_finite_loss_is_read_and_named_only_when_fairseq_replays_the_update(caplog):
    report, counter = NonFiniteLossReport(), OpCounter()
    nan = torch.tensor(float("nan"))
    with counter.counting(), caplog.at_level(logging.ERROR):
        counter.mark(nan)
        report.after_train_step(torch.tensor(1.0), {"window": (0, 20)}, update_num=4)
        report.after_train_step(nan, {"window": (20, 35)}, update_num=5)  # first pass: not read
        report.after_train_step(nan, {"window": (35, 50)}, update_num=5)  # --update-freq 2: not read
        assert reads(counter.counts) == 0 and not caplog.records
        report.after_train_step(nan, {"window": (20, 35)}, update_num=5)  # the NaN detector's replay
    assert reads(counter.counts) >= 1
    assert "non-finite training loss nan at update 6: window [20, 35)" in caplog.text


def test_a_finite_replay_logs_nothing(caplog):
    report = NonFiniteLossReport()
    with caplog.at_level(logging.ERROR):
        for _ in range(2):
            report.after_train_step(torch.tensor(2.0), {"window": (0, 10)}, update_num=0)
    assert not caplog.records


@pytest.mark.parametrize("training", [True, False])
def test_the_criterion_forward_makes_no_read(training):
    from types import SimpleNamespace

    class Decoder(torch.nn.Module):
        def target_log_probs(self, features, target):
            return torch.log_softmax(features, -1).gather(-1, target.unsqueeze(-1)).reshape(-1)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.decoder = Decoder()
            self.w = torch.nn.Parameter(torch.randn(5, 5))

        def forward(self, src_tokens, features_only=True, **kwargs):
            h = torch.nn.functional.embedding(src_tokens, self.w)  # (B, T, 5)
            return h, {"dropped_output": h, "raw_output": h}

        def get_targets(self, sample, net_output):
            return sample["target"]

    model = Model().train(training)
    criterion = AWDSplitCrossEntropyCriterion(SimpleNamespace(), alpha=2.0, beta=1.0)
    sample = {"net_input": {"src_tokens": torch.randint(0, 5, (2, 4))}, "target": torch.randint(0, 5, (2, 4)),
              "ntokens": 8, "nsentences": 2}
    counter = OpCounter()
    with counter.counting():
        counter.mark(sample)
        loss, _, log = criterion(model, sample)
        loss.backward()
    assert reads(counter.counts) == 0
    assert set(log) >= ({"loss", "ar", "tar"} if training else {"loss"})
