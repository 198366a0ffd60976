"""fairseq-train across two CPU processes (gloo, `--ddp-backend legacy_ddp`) with our task, model,
criterion and optimizer, against independent references: the batchify layout written out here,
one process reading all the columns, an uninterrupted run, and rank 0 against rank 1.

The corpus is cut from the embedded WikiText-2 like conftest's tiny corpus, with a training split
of 40 lines read 6 times: the model overfits it within two epochs, so that NT-ASGD's non-monotone
rule (n = 1) fires at the first epoch it can, epoch 3, and epoch 4 averages.

A driver wraps fairseq's Trainer in each process to record what that rank read (windows, input
tokens, validation loss sums) and its parameters and optimizer state after every checkpoint save.
"""
import os
import socket
import subprocess
import sys

import pytest
import torch
from fairseq.data import Dictionary, data_utils

from helpers import REPO, TINY_MODEL, USER_DIR, head_lines, make_data_bin, valid_losses

B = 10  # streams per rank
EVAL_B = 5  # --eval-batch-size: not a multiple of the two ranks
SAVE_EVERY = 12  # updates; an epoch is ~48
SAME_AS_ONE_RANK = 36  # updates over which fp32 rounding differences stay below 1e-5 at lr 30
NO_DROPOUT = ["--dropout", "0", "--dropouth", "0", "--dropouti", "0", "--dropoute", "0", "--wdrop", "0"]

TRACE = r'''
import sys, torch
import fairseq.tasks
from fairseq import checkpoint_utils
from fairseq.trainer import Trainer
import fairseq_cli.train

record = {"train": [], "valid": [], "saved": []}
train_step, valid_step, save = Trainer.train_step, fairseq.tasks.FairseqTask.valid_step, checkpoint_utils.save_checkpoint

def traced_train_step(self, samples, raise_oom=False):
    for s in samples:
        if s and "window" in s:
            record["train"].append((self.get_num_updates(), tuple(s["window"]), s["net_input"]["src_tokens"].clone()))
    return train_step(self, samples, raise_oom)

def traced_valid_step(self, sample, model, criterion):
    loss, sample_size, log = valid_step(self, sample, model, criterion)
    record["valid"].append((tuple(sample["window"]), sample["net_input"]["src_tokens"].clone(),
                            float(log["loss"]), int(log["ntokens"])))
    return loss, sample_size, log

def traced_save(cfg, trainer, epoch_itr, val_loss):
    out = save(cfg, trainer, epoch_itr, val_loss)
    optimizer = trainer.optimizer.state_dict()
    record["saved"].append({
        "epoch": epoch_itr.epoch, "updates": trainer.get_num_updates(),
        "model": {k: v.clone() for k, v in trainer.get_model().state_dict().items()},
        "nt_asgd": optimizer.get("nt_asgd"),
        "ax": [optimizer["state"][i]["ax"].clone() for i in sorted(optimizer["state"]) if "ax" in optimizer["state"][i]],
    })
    return out

Trainer.train_step, fairseq.tasks.FairseqTask.valid_step = traced_train_step, traced_valid_step
checkpoint_utils.save_checkpoint = traced_save
out = sys.argv.pop(1)
sys.argv[0] = "fairseq-train"
try:
    fairseq_cli.train.cli_main()
finally:
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    torch.save(record, f"{out}.rank{rank}.pt")
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def args_for(data, save_dir, batch_size, *extra):
    return [
        data, "--user-dir", USER_DIR, "--cpu", "--num-workers", "0", "--seed", "1",
        "--task", "awd_language_modeling", "--arch", "awd_lstm", *TINY_MODEL, *NO_DROPOUT,
        "--criterion", "awd_split_cross_entropy", "--optimizer", "nt_asgd", "--lr", "30", "--clip-norm", "0.25",
        "--lr-scheduler", "awd_when", "--nonmono", "1", "--batch-size", batch_size, "--eval-batch-size", EVAL_B,
        "--bptt", "20", "--save-interval-updates", SAVE_EVERY, "--save-dir", save_dir,
        "--no-progress-bar", "--log-format", "simple", "--log-interval", "10", *extra,
    ]


def launch(tmp_path, name, world_size, args):
    """fairseq-train through the trace driver on `world_size` processes; returns (logs, records)."""
    driver = tmp_path / "trace_driver.py"
    driver.write_text(TRACE)
    out = tmp_path / name
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, str(driver), str(out), *map(str, args)]
    if world_size > 1:
        cmd += [
            "--distributed-world-size", str(world_size), "--distributed-no-spawn", "--distributed-backend", "gloo",
            "--distributed-init-method", f"tcp://127.0.0.1:{free_port()}", "--ddp-backend", "legacy_ddp",
        ]
        cmds = [cmd + ["--distributed-rank", str(rank)] for rank in range(world_size)]
    else:
        cmds = [cmd]
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) for c in cmds]
    logs = [p.communicate(timeout=1200)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(log[-3000:] for log in logs)
    return logs, [torch.load(f"{out}.rank{r}.pt", weights_only=True) for r in range(len(cmds))]


def reference_columns(data, split, num_columns):
    """The original's batchify, written out: `</s>` + the split's lines, cut into `num_columns`
    equal columns (column j is tokens j*N .. (j+1)*N - 1), the tail dropped; (N, columns)."""
    dictionary = Dictionary.load(str(data / "dict.txt"))
    lines = data_utils.load_indexed_dataset(str(data / split), dictionary)
    stream = [dictionary.eos()] + [int(t) for i in range(len(lines)) for t in lines[i]]
    n = len(stream) // num_columns
    return torch.tensor([stream[j * n : (j + 1) * n] for j in range(num_columns)]).t()


def eval_share(rank, world_size, columns=EVAL_B):
    """The validation columns a rank reads: a contiguous share of the --eval-batch-size layout."""
    return list(range(rank * columns // world_size, (rank + 1) * columns // world_size))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    src = REPO / "data" / "wikitext-2"
    return make_data_bin(
        tmp_path_factory.mktemp("overfit"),
        {
            "train": head_lines(src / "train.txt.xz", 40) * 6,
            "valid": head_lines(src / "valid.txt.xz", 60),
            "test": head_lines(src / "test.txt.xz", 20),
        },
    )


@pytest.fixture(scope="module")
def two_ranks(data, tmp_path_factory):
    """Two ranks of B streams for 4 epochs."""
    tmp = tmp_path_factory.mktemp("two_ranks")
    return launch(tmp, "two", 2, args_for(data, tmp / "ck", B, "--max-epoch", "4"))


@pytest.fixture(scope="module")
def one_rank(data, tmp_path_factory):
    """The same run on one process reading all 2B streams, for the first updates."""
    tmp = tmp_path_factory.mktemp("one_rank")
    return launch(tmp, "one", 1, args_for(data, tmp / "ck", 2 * B, "--max-update", SAME_AS_ONE_RANK))


def test_each_rank_reads_its_own_contiguous_columns_on_one_schedule(data, two_ranks):
    _, (rank0, rank1) = two_ranks
    columns = reference_columns(data, "train", 2 * B)  # (N, 2B)
    rows = columns.size(0)
    schedules = []
    for rank, record in enumerate((rank0, rank1)):
        windows = [w for _, w, _ in record["train"]]
        for (_, (start, end), tokens) in record["train"]:
            assert torch.equal(tokens, columns[start:end, rank * B : (rank + 1) * B].t())
        schedules.append(windows)
        epochs, current = [], []
        for start, end in windows:  # each epoch reads the rows 0 .. N-2 once, window after window
            if start == 0 and current:
                epochs.append(current)
                current = []
            assert start == (current[-1][1] if current else 0)
            current.append((start, end))
        epochs.append(current)
        # the original's `while i < N - 1 - 1`: an epoch ends on row N - 1, or N - 2 when a window stops there
        assert len(epochs) == 4 and all(e[-1][1] in (rows - 2, rows - 1) for e in epochs)
        assert epochs[0] != epochs[1]  # variable lengths, drawn anew every epoch
    assert schedules[0] == schedules[1]
    # the update each window belongs to is the same on both ranks too
    assert [u for u, _, _ in rank0["train"]] == [u for u, _, _ in rank1["train"]]


def test_validation_reads_the_eval_layout_whatever_the_number_of_ranks(data, two_ranks, one_rank):
    """Rank r reads its share of the --eval-batch-size columns and fairseq sums the ranks'
    losses, so a validation scores the very tokens one process scores: the same loss."""
    _, (rank0, rank1) = two_ranks
    _, (single,) = one_rank
    columns = reference_columns(data, "valid", EVAL_B)
    for rank, record in enumerate((rank0, rank1)):
        for (start, end), tokens, _, _ in record["valid"]:
            assert torch.equal(tokens, columns[start:end, eval_share(rank, 2)].t())
    assert len(rank0["valid"]) == len(rank1["valid"]) > len(single["valid"]) > 0
    for (w0, _, loss0, n0), (w1, _, loss1, n1), (w, _, loss, n) in zip(rank0["valid"], rank1["valid"], single["valid"]):
        assert w0 == w1 == w and n0 + n1 == n
        assert loss0 + loss1 == pytest.approx(loss, rel=1e-5)


def test_two_ranks_of_b_streams_train_like_one_of_2b(two_ranks, one_rank):
    """No dropout: fairseq sums the ranks' gradients and divides by the summed sample size, the
    single process divides its own sum by the same number of tokens, and both scale the lr of a
    window by the same seq_len / bptt. The parameters agree at every checkpoint."""
    logs, (rank0, _) = two_ranks
    single_logs, (single,) = one_rank
    two = [s for s in rank0["saved"] if s["updates"] <= SAME_AS_ONE_RANK]
    assert [s["updates"] for s in two] == [s["updates"] for s in single["saved"]] == [12, 24, 36]
    for got, want in zip(two, single["saved"]):
        for name, value in want["model"].items():
            torch.testing.assert_close(got["model"][name], value, rtol=1e-4, atol=1e-5, msg=f"{name} @ {want['updates']}")
    # validations on the same parameters and the same tokens: fairseq logs the same losses
    assert valid_losses(logs[0])[:3] == pytest.approx(valid_losses(single_logs[0]), abs=2e-3)


def test_nt_asgd_switches_on_the_same_epoch_and_ranks_agree(two_ranks):
    """The non-monotone rule sees the loss summed over the ranks, so it fires at the same epoch
    on every rank; the averages (in the model while checkpointing) agree bit for bit."""
    logs, (rank0, rank1) = two_ranks
    assert "NT-ASGD: switching to averaged SGD (validation loss" in logs[0]
    switched = [[s["epoch"] for s in record["saved"] if s["nt_asgd"]["averaging"]] for record in (rank0, rank1)]
    assert switched[0] == switched[1] and switched[0][0] == 4, switched
    assert len(rank0["saved"]) == len(rank1["saved"])
    for s0, s1 in zip(rank0["saved"], rank1["saved"]):
        assert s0["nt_asgd"] == s1["nt_asgd"]
        assert all(torch.equal(s0["model"][k], s1["model"][k]) for k in s0["model"])
        assert len(s0["ax"]) == len(s1["ax"]) and all(torch.equal(a, b) for a, b in zip(s0["ax"], s1["ax"]))
    assert rank0["saved"][-1]["nt_asgd"]["num_averaged"] > 2


def test_resumed_two_rank_run_matches_the_uninterrupted_one(data, two_ranks, tmp_path):
    """The same command run three times on two ranks: to the end of epoch 1; resumed there up to
    a checkpoint inside epoch 2, which must hold the uninterrupted run's parameters bit for bit;
    resumed from that checkpoint to the end of epoch 2, each rank carrying on with the
    uninterrupted run's windows from the update it stopped at."""
    _, (rank0, rank1) = two_ranks
    stop = 5 * SAVE_EVERY  # inside epoch 2
    # each rank reads checkpoint_last.pt itself: fairseq's default, rank 0 broadcasting what it
    # loaded, pickles the config as omegaconf's DictConfig, which torch >= 2.6 refuses to load
    resume = ["--load-checkpoint-on-all-dp-ranks"]
    launch(tmp_path, "first", 2, args_for(data, tmp_path / "ck", B, "--max-epoch", "1"))
    logs, (second, _) = launch(tmp_path, "second", 2, args_for(data, tmp_path / "ck", B, "--max-update", stop, *resume))
    assert f"Loaded checkpoint {tmp_path / 'ck'}/checkpoint_last.pt (epoch 2 @ " in logs[0]
    expected = [s for s in rank0["saved"] if s["epoch"] == 2 and s["updates"] <= stop]
    assert [s["updates"] for s in second["saved"]] == [s["updates"] for s in expected] and expected[-1]["updates"] == stop
    for got, want in zip(second["saved"], expected):
        assert got["nt_asgd"] == want["nt_asgd"]
        assert all(torch.equal(got["model"][k], want["model"][k]) for k in want["model"])
    logs, third = launch(tmp_path, "third", 2, args_for(data, tmp_path / "ck", B, "--max-epoch", "2", *resume))
    assert f"Loaded checkpoint {tmp_path / 'ck'}/checkpoint_last.pt (epoch 2 @ {stop} updates)" in logs[0]
    for resumed, uninterrupted in zip(third, (rank0, rank1)):
        windows = [(u, w) for u, w, _ in resumed["train"]]
        assert windows[0][0] == stop
        assert windows == [(u, w) for u, w, _ in uninterrupted["train"] if stop <= u < stop + len(windows)]
        assert resumed["saved"][-1]["updates"] == max(s["updates"] for s in rank0["saved"] if s["epoch"] == 2)
