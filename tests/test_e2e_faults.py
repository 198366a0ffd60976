"""Faults a real run meets, through fairseq-train in subprocesses on the tiny corpus (CPU):

* SIGKILL at a random update, inside a checkpoint write (torch.save), inside the copy of a
  checkpoint to checkpoint_last.pt, and right after the NT-ASGD switch; the same command run again
  continues from the last checkpoint and ends with the uninterrupted run's parameters, averages
  and validation loss, bit for bit;
* no checkpoint file is ever left half-written (each one loads);
* a NaN loss is reported with the window (stream offsets) and the update where it happened.
"""
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from helpers import TINY_MODEL, USER_DIR, valid_losses

BPTT = 20
# 40 streams: ~28 updates per epoch; a checkpoint (and a validation) every 10 updates and at
# each epoch's end; averaging from epoch 2 on; dropout on (fairseq seeds it per update)
TRAIN = [
    "--user-dir", USER_DIR, "--cpu", "--num-workers", "0", "--seed", "1",
    "--task", "awd_language_modeling", "--arch", "awd_lstm", *TINY_MODEL,
    "--criterion", "awd_split_cross_entropy", "--optimizer", "nt_asgd", "--lr", "30", "--clip-norm", "0.25",
    "--lr-scheduler", "awd_when", "--asgd-at-epoch", "2", "--batch-size", "40", "--eval-batch-size", "10",
    "--bptt", str(BPTT), "--max-epoch", "3", "--save-interval-updates", "10",
    "--no-progress-bar", "--log-format", "simple", "--log-interval", "1",
]
UPDATE = re.compile(r"num_updates=(\d+)")
SAVED = re.compile(r"Saved checkpoint \S+ \(epoch \d+ @ (\d+) updates")
LOADED = re.compile(r"Loaded checkpoint \S+ \(epoch \d+ @ (\d+) updates\)")
SWITCH = "NT-ASGD: switching to averaged SGD"

# Runs fairseq-train and SIGKILLs itself after writing half of the bytes inside the n-th torch.save
# or the n-th copy to checkpoint_last.pt (argv: save|copy N, then fairseq-train's arguments).
KILL_INSIDE = r'''
import io, os, shutil, signal, sys
import torch
import fairseq_cli.train

what, n = sys.argv.pop(1), int(sys.argv.pop(1))
calls = {"save": 0, "copy": 0}
save, copyfile = torch.save, shutil.copyfile

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def half_save(obj, f, *args, **kwargs):
    calls["save"] += 1
    if what != "save" or calls["save"] < n:
        return save(obj, f, *args, **kwargs)
    buffer = io.BytesIO()
    save(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    f.write(data[: len(data) // 2])
    f.flush()
    die()

def half_copy(src, dst, *args, **kwargs):
    last = os.path.basename(dst).startswith("checkpoint_last.pt")  # also its .tmp
    calls["copy"] += last
    if what != "copy" or calls["copy"] < n or not last:
        return copyfile(src, dst, *args, **kwargs)
    with open(src, "rb") as f_in, open(dst, "wb") as f_out:
        data = f_in.read()
        f_out.write(data[: len(data) // 2])
        f_out.flush()
    die()

torch.save, shutil.copyfile = half_save, half_copy
sys.argv[0] = "fairseq-train"
fairseq_cli.train.cli_main()
'''

# Sets every parameter of the model to NaN before the update given in argv[1] (1-based).
POISON = r'''
import sys
import torch
from fairseq.trainer import Trainer
import fairseq_cli.train

at = int(sys.argv.pop(1))
train_step = Trainer.train_step

def poisoned(self, samples, raise_oom=False):
    if self.get_num_updates() + 1 == at:
        with torch.no_grad():
            for p in self.model.parameters():
                p.fill_(float("nan"))
    return train_step(self, samples, raise_oom)

Trainer.train_step = poisoned
sys.argv[0] = "fairseq-train"
fairseq_cli.train.cli_main()
'''

ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def command(data, save_dir, driver=None, *driver_args):
    head = [sys.executable, "-m", "fairseq_cli.train"] if driver is None else [sys.executable, str(driver), *driver_args]
    return [*head, str(data), *TRAIN, "--save-dir", str(save_dir)]


def run(cmd, check=True):
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    if check:
        assert proc.returncode == 0, proc.stdout[-4000:]
    return proc


def run_and_kill(cmd, kill_when):
    """Runs `cmd` and SIGKILLs it on the first output line for which `kill_when(line)` holds."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if kill_when(line):
            proc.send_signal(signal.SIGKILL)
            break
    lines.append(proc.stdout.read())
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "".join(lines)[-4000:]
    return "".join(lines)


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_checkpoints_whole(save_dir):
    """Every checkpoint*.pt loads; only fairseq's temporary files may be cut short."""
    for path in sorted(Path(save_dir).iterdir()):
        if path.suffix == ".pt":
            load(path)  # raises on a truncated file
        else:
            assert path.name.endswith(".tmp"), path


def assert_same_training(reference, save_dir, log):
    ref, got = load(reference.dir / "checkpoint_last.pt"), load(save_dir / "checkpoint_last.pt")
    assert got["optimizer_history"][-1]["num_updates"] == ref["optimizer_history"][-1]["num_updates"]
    assert ref["model"].keys() == got["model"].keys()
    assert all(torch.equal(ref["model"][k], got["model"][k]) for k in ref["model"])
    ref_opt, got_opt = ref["last_optimizer_state"], got["last_optimizer_state"]
    assert ref_opt["nt_asgd"] == got_opt["nt_asgd"] and ref_opt["nt_asgd"]["num_averaged"] > 0
    assert all(torch.equal(ref_opt["state"][i]["ax"], got_opt["state"][i]["ax"]) for i in ref_opt["state"])
    assert valid_losses(log)[-1] == valid_losses(reference.log)[-1]
    assert ref["extra_state"]["val_loss"] == got["extra_state"]["val_loss"]


@pytest.fixture(scope="module")
def reference(tiny_bin, tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("uninterrupted")
    log = run(command(tiny_bin, save_dir)).stdout
    assert SWITCH in log
    return SimpleNamespace(dir=save_dir, log=log)


def restart_and_compare(tiny_bin, reference, save_dir, killed_log):
    assert_checkpoints_whole(save_dir)
    saved = [int(u) for u in SAVED.findall(killed_log)]
    last = save_dir / "checkpoint_last.pt"
    last_updates = load(last)["optimizer_history"][-1]["num_updates"] if last.exists() else None
    log = run(command(tiny_bin, save_dir)).stdout
    if saved:  # continues from the last checkpoint written in full (the kill may follow its log line)
        assert last_updates >= saved[-1]
        assert [int(u) for u in LOADED.findall(log)] == [last_updates], log[-3000:]
    assert_same_training(reference, save_dir, log)
    return log


def test_killed_at_a_random_update(tiny_bin, reference, tmp_path):
    total = load(reference.dir / "checkpoint_last.pt")["optimizer_history"][-1]["num_updates"]
    at = random.Random(20261201).randint(12, total - 5)
    log = run_and_kill(command(tiny_bin, tmp_path), lambda line: f"num_updates={at}," in line)
    restart_and_compare(tiny_bin, reference, tmp_path, log)


def test_killed_right_after_the_nt_asgd_switch(tiny_bin, reference, tmp_path):
    log = run_and_kill(command(tiny_bin, tmp_path), lambda line: SWITCH in line)
    assert SAVED.findall(log)  # epoch 1's checkpoints are written, before the switch
    resumed = restart_and_compare(tiny_bin, reference, tmp_path, log)
    assert SWITCH in resumed


@pytest.mark.parametrize("what,n", [("save", 3), ("copy", 2)])
def test_killed_while_writing_a_checkpoint(tiny_bin, reference, tmp_path, what, n):
    """fairseq writes a checkpoint into `<name>.tmp` and renames it; the copies it then makes
    (checkpoint_best.pt, checkpoint_last.pt) must not be left half-written either."""
    driver = tmp_path / "kill_inside.py"
    driver.write_text(KILL_INSIDE)
    save_dir = tmp_path / "ck"
    proc = run(command(tiny_bin, save_dir, driver, what, str(n)), check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stdout[-4000:]
    restart_and_compare(tiny_bin, reference, save_dir, proc.stdout)


def test_nan_loss_names_the_window_and_the_update(tiny_bin, tmp_path):
    driver = tmp_path / "poison.py"
    driver.write_text(POISON)
    at = 7  # with --fixed-bptt the k-th update of epoch 1 reads rows (k-1)*bptt .. k*bptt
    proc = run([*command(tiny_bin, tmp_path / "ck", driver, str(at)), "--fixed-bptt"], check=False)
    assert proc.returncode != 0
    assert "gradients are Nan/Inf" in proc.stdout  # fairseq's own error, after ours
    found = re.search(r"non-finite training loss (\S+) at update (\d+): window \[(\d+), (\d+)\)", proc.stdout)
    assert found, proc.stdout[-3000:]
    assert found.group(1) == "nan" and int(found.group(2)) == at
    assert (int(found.group(3)), int(found.group(4))) == ((at - 1) * BPTT, at * BPTT)
    assert load(tmp_path / "ck" / "crash.pt")["optimizer_history"][-1]["num_updates"] == at - 1
