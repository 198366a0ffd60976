"""NT-ASGD through fairseq-train, fairseq-eval-lm and fairseq's checkpoints, in subprocesses on a
tiny PTB slice (CPU, deterministic). References: the mean of the raw iterates recorded in
per-update checkpoints, an uninterrupted run, the valid loss fairseq logged, the base model's bytes,
and rank 0 against rank 1."""

import hashlib
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import ptb_lines, run_fairseq
from helpers import valid_losses_by_epoch as valid_losses

REPO = Path(__file__).resolve().parents[1]

EPOCHS = 7
COMMON = [
    "--user-dir", str(REPO / "awd_fairseq"), "--cpu", "--num-workers", "0", "--seed", "1",
    "--task", "awd_language_modeling", "--bptt", "20",
]
TRAIN = COMMON + [
    "--arch", "awd_lstm", "--emsize", "32", "--nhid", "64", "--nlayers", "2",
    "--dropout", "0.1", "--dropouth", "0.1", "--dropouti", "0.1", "--dropoute", "0.1", "--wdrop", "0.1",
    "--criterion", "awd_split_cross_entropy", "--batch-size", "10",
    "--no-progress-bar", "--log-format", "simple", "--log-interval", "10",
]
NO_DROPOUT = ["--dropout", "0", "--dropouth", "0", "--dropouti", "0", "--dropoute", "0"]  # --wdrop 0 drops a parameter
NT_ASGD = [
    "--optimizer", "nt_asgd", "--lr", "30", "--clip-norm", "0.25", "--lr-scheduler", "awd_when", "--nonmono", "1",
]
SWITCH = re.compile(r"NT-ASGD: switching to averaged SGD \(validation loss \S+ at epoch (\d+) ")


def run(tool, *args, check=True, cwd=None):
    """One fairseq tool on one thread (bit-for-bit comparisons), its stderr in `.stdout`."""
    return run_fairseq(tool, args, check=check, threads=1, cwd=cwd, merge_output=True)


def train(data, save_dir, *extra, max_epoch=EPOCHS, check=True):
    return run("train", data, *TRAIN, *NT_ASGD, "--save-dir", save_dir, "--max-epoch", max_epoch, *extra, check=check)


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).iterdir())}


def param_names(checkpoint, data):
    """Names of the optimized parameters in optimizer order (fairseq: model, then criterion)."""
    from fairseq import checkpoint_utils

    import awd_fairseq  # noqa: F401  (registers the plugin in this process)

    models, _ = checkpoint_utils.load_model_ensemble([str(checkpoint)], arg_overrides={"data": str(data)})
    return [name for name, p in models[0].named_parameters() if p.requires_grad]


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    """200 training, 60 validation and 40 test lines of PTB (or its stand-in), binarized."""
    root = tmp_path_factory.mktemp("ptb_slice")
    for split, lines in (("train", 200), ("valid", 60), ("test", 40)):
        (root / f"{split}.txt").write_text(ptb_lines(split, lines), encoding="utf-8")
    run(
        "preprocess", "--only-source", "--trainpref", root / "train.txt", "--validpref", root / "valid.txt",
        "--testpref", root / "test.txt", "--destdir", root / "bin", "--workers", "1",
    )
    return root / "bin"


@pytest.fixture(scope="session")
def reference(data, tmp_path_factory):
    """An uninterrupted run; the non-monotone rule (n = 1) fires during it."""
    save_dir = tmp_path_factory.mktemp("reference")
    log = train(data, save_dir).stdout
    switches = SWITCH.findall(log)
    assert len(switches) == 1, log[-3000:]
    switch = int(switches[0])
    assert switch <= EPOCHS - 2, f"the trigger fired at epoch {switch}: too late for the tests"
    return save_dir, log, switch


def test_switch_is_logged_and_later_checkpoints_hold_the_average(reference):
    save_dir, log, switch = reference
    before = load(save_dir / f"checkpoint{switch}.pt")
    after = load(save_dir / f"checkpoint{switch + 1}.pt")
    assert before["last_optimizer_state"]["nt_asgd"]["averaging"] is False  # saved before the switch
    updates = after["optimizer_history"][-1]["num_updates"] - before["optimizer_history"][-1]["num_updates"]
    assert after["last_optimizer_state"]["nt_asgd"] == {"averaging": True, "num_averaged": updates, "swapped": True}
    assert load(save_dir / "checkpoint_last.pt")["last_optimizer_state"]["nt_asgd"]["swapped"] is True
    assert "nothing will start averaging" not in log


def test_the_trigger_saw_the_unrounded_losses(reference):
    """fairseq logs (and hands the scheduler) the loss rounded to 3 decimals; the trigger's history
    holds the exact values those were rounded from."""
    save_dir, log, switch = reference
    logged = valid_losses(log)
    history = load(save_dir / "checkpoint_last.pt")["last_optimizer_state"]["nt_asgd_trigger"]["history"]
    assert len(history) == switch  # epochs 1 .. switch, the firing one included
    for epoch, exact in enumerate(history, start=1):
        assert abs(exact - logged[epoch]) <= 0.0005 + 1e-9, (epoch, exact, logged[epoch])
    assert any(exact != round(exact, 3) for exact in history)


@pytest.mark.parametrize("update_freq", [1, 2])
def test_checkpoint_holds_the_mean_of_the_iterates(data, tmp_path, update_freq):
    """Averaging from epoch 2 with a validation and a checkpoint after every update: each one
    stores the raw iterate in the optimizer state and the running mean in the model."""
    train(
        data, tmp_path, "--asgd-at-epoch", "2", "--save-interval-updates", "1", "--update-freq", update_freq,
        max_epoch=2,
    )
    start = load(tmp_path / "checkpoint1.pt")["optimizer_history"][-1]["num_updates"]
    end_state = load(tmp_path / "checkpoint2.pt")
    end = end_state["optimizer_history"][-1]["num_updates"]
    states = [load(tmp_path / f"checkpoint_2_{u}.pt") for u in range(start + 1, end)] + [end_state]
    names = param_names(tmp_path / "checkpoint2.pt", data)
    iterates = []
    for k, state in enumerate(states, start=1):
        optimizer = state["last_optimizer_state"]
        assert optimizer["nt_asgd"] == {"averaging": True, "num_averaged": k, "swapped": True}
        iterates.append([optimizer["state"][i]["ax"] for i in range(len(names))])
        for i, name in enumerate(names):
            expected = torch.stack([it[i] for it in iterates]).mean(0)
            torch.testing.assert_close(state["model"][name], expected, rtol=1e-5, atol=1e-6)
    assert len(iterates) == end - start > 2
    assert not torch.equal(end_state["model"][names[0]], iterates[-1][0])


@pytest.mark.parametrize("where", ["at_switch", "after_switch"])
def test_resume_matches_the_uninterrupted_run(data, reference, tmp_path, where):
    """Interrupted after the epoch whose loss fires the trigger (its checkpoint is written before
    the scheduler sees that loss) or one epoch later (a checkpoint holding the average)."""
    ref_dir, ref_log, switch = reference
    stop = switch if where == "at_switch" else switch + 1
    train(data, tmp_path, max_epoch=stop)
    log = train(data, tmp_path).stdout
    assert f"Loaded checkpoint {tmp_path}/checkpoint_last.pt (epoch {stop + 1}" in log
    if where == "at_switch":
        assert "reaches the trigger now" in log and SWITCH.search(log)
    ref, got = load(ref_dir / "checkpoint_last.pt"), load(tmp_path / "checkpoint_last.pt")
    assert ref["model"].keys() == got["model"].keys()
    assert all(torch.equal(ref["model"][k], got["model"][k]) for k in ref["model"])
    ref_opt, got_opt = ref["last_optimizer_state"], got["last_optimizer_state"]
    assert ref_opt["nt_asgd"] == got_opt["nt_asgd"] and ref_opt["nt_asgd_trigger"] == got_opt["nt_asgd_trigger"]
    assert all(torch.equal(ref_opt["state"][i]["ax"], got_opt["state"][i]["ax"]) for i in ref_opt["state"])
    expected = {e: v for e, v in valid_losses(ref_log).items() if e > stop}
    assert {e: v for e, v in valid_losses(log).items() if e > stop} == expected and expected


def test_finetune_then_eval_lm_and_the_base_model_is_untouched(data, reference, tmp_path):
    base_dir, _, _ = reference
    base = digest(base_dir)
    refused = train(
        data, base_dir, "--finetune-from-model", base_dir / "checkpoint_best.pt", "--asgd-from-start",
        "--stop-on-nonmono", check=False,
    )
    assert refused.returncode != 0 and "overwrite the base model" in refused.stdout
    ft_dir = tmp_path / "finetune"
    finetune = [
        "--finetune-from-model", base_dir / "checkpoint_best.pt", "--asgd-from-start", "--stop-on-nonmono",
        *NO_DROPOUT,  # overfits sooner, so that the criterion fires within a few epochs
    ]
    log = train(data, ft_dir, *finetune, max_epoch=20).stdout
    assert "switching to averaged SGD (--asgd-from-start)" in log
    assert "stopping (--stop-on-nonmono)" in log and "stopping training because current learning rate" in log
    losses = valid_losses(log)
    assert max(losses) < 20 and len(losses) >= 3
    eval_log = run(
        "eval_lm", data, "--path", ft_dir / "checkpoint_best.pt", *COMMON, "--gen-subset", "valid",
        "--test-batch-size", "10",
    ).stdout
    eval_loss = float(re.search(r"Loss \(base 2\): ([\d.]+)", eval_log).group(1))
    assert eval_loss == pytest.approx(min(losses.values()), abs=6e-4)  # fairseq rounds to 3 decimals
    assert digest(base_dir) == base
    rerun = train(data, ft_dir, *finetune, max_epoch=20).stdout
    assert "| valid |" not in rerun and "stopping training because current learning rate" in rerun


def test_adam_with_when(data, tmp_path):
    log = run(
        "train", data, *TRAIN, "--optimizer", "adam", "--lr", "0.002", "--weight-decay", "1.2e-6",
        "--clip-norm", "0.25", "--lr-scheduler", "awd_when", "--when", "1", "2", "--save-dir", tmp_path,
        "--max-epoch", "3",
    ).stdout
    assert "learning rate 0.0002 for epoch 2" in log and "learning rate 2e-05 for epoch 3" in log
    assert "NT-ASGD" not in log
    assert load(tmp_path / "checkpoint_last.pt")["optimizer_history"][-1]["optimizer_name"] == "FairseqAdam"


DUMP_EACH_RANK = """
import sys, torch
from fairseq import checkpoint_utils
import fairseq_cli.train

save = checkpoint_utils.save_checkpoint

def save_and_dump(cfg, trainer, epoch_itr, val_loss):
    out = save(cfg, trainer, epoch_itr, val_loss)
    state = {"model": trainer.get_model().state_dict(), "optimizer": trainer.optimizer.state_dict()}
    torch.save(state, f"{cfg.save_dir}/rank{trainer.data_parallel_rank}_epoch{epoch_itr.epoch}.pt")
    return out

checkpoint_utils.save_checkpoint = save_and_dump
sys.argv[0] = "fairseq-train"
fairseq_cli.train.cli_main()
"""


def test_distributed_ranks_hold_identical_averages(data, tmp_path):
    """Two CPU processes (gloo, legacy_ddp): after the switch both ranks validate and save the
    same averaged weights and keep the same raw iterates."""
    driver = tmp_path / "dump_each_rank.py"
    driver.write_text(DUMP_EACH_RANK)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    args = [
        sys.executable, driver, data, *TRAIN, *NT_ASGD, "--asgd-at-epoch", "2", "--max-epoch", "3",
        "--save-dir", tmp_path, "--distributed-world-size", "2", "--distributed-no-spawn",
        "--distributed-init-method", f"tcp://127.0.0.1:{port}", "--distributed-backend", "gloo",
        "--ddp-backend", "legacy_ddp",
    ]
    procs = [
        subprocess.Popen(
            [str(a) for a in args] + ["--distributed-rank", str(rank)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        for rank in (0, 1)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs[0][-3000:] + outputs[1][-3000:]
    rank0, rank1 = load(tmp_path / "rank0_epoch3.pt"), load(tmp_path / "rank1_epoch3.pt")
    assert rank0["optimizer"]["nt_asgd"] == rank1["optimizer"]["nt_asgd"]
    assert rank0["optimizer"]["nt_asgd"]["swapped"] and rank0["optimizer"]["nt_asgd"]["num_averaged"] > 2
    assert all(torch.equal(rank0["model"][k], rank1["model"][k]) for k in rank0["model"])
    opt0, opt1 = rank0["optimizer"]["state"], rank1["optimizer"]["state"]
    assert all(torch.equal(opt0[i]["ax"], opt1[i]["ax"]) for i in opt0)
    saved = load(tmp_path / "checkpoint_last.pt")["model"]
    assert all(torch.equal(saved[k], rank1["model"][k]) for k in saved)
