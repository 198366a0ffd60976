"""Checkpoints holding `argparse.Namespace` load with torch's weights_only loading on: those written
with fairseq's `--optimizer sgd` (its config is kept as the parsed Namespace) and fairseq's
pre-hydra checkpoints (all options in `args`), in every tool that reads a checkpoint. References:
the validation loss fairseq-train logged for the same weights, the checkpoint's own tensors, and a
fresh interpreter without the plugin, where the same file must still be refused."""
import argparse
import re
import subprocess
import sys

import pytest
import torch

from helpers import REPO, eval_lm_loss, run_fairseq, train_args, valid_losses

SGD = ["--optimizer", "sgd", "--lr", "1", "--max-update", "2"]


def _sgd_args(data, save_dir, *extra):
    args = train_args(data, save_dir, *extra)
    i = args.index("--optimizer")
    del args[i : i + 4]  # --optimizer nt_asgd --lr 30
    return args + SGD


@pytest.fixture(scope="module")
def sgd_run(tiny_bin, tmp_path_factory):
    save = tmp_path_factory.mktemp("sgd")
    proc = run_fairseq("train", _sgd_args(tiny_bin, save))
    losses = valid_losses(proc.stdout + proc.stderr)
    assert len(losses) == 1, proc.stderr[-2000:]
    return save / "checkpoint_last.pt", losses[0]


def _weights_only_load(path, import_plugin: bool) -> subprocess.CompletedProcess:
    code = ("import awd_fairseq\n" if import_plugin else "") + (
        f"import torch\nstate = torch.load({str(path)!r}, map_location='cpu', weights_only=True)\nprint(sorted(state))"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)


def test_sgd_checkpoint_needs_the_allowlist_and_gets_exactly_namespace(sgd_run):
    checkpoint, _ = sgd_run
    bare = _weights_only_load(checkpoint, import_plugin=False)
    assert bare.returncode != 0 and "argparse.Namespace" in bare.stderr  # the file does hold one
    with_plugin = _weights_only_load(checkpoint, import_plugin=True)
    assert with_plugin.returncode == 0, with_plugin.stderr[-2000:]
    assert "'model'" in with_plugin.stdout
    allowed = torch.serialization.get_safe_globals()
    assert argparse.Namespace in allowed
    assert not any(getattr(g, "__module__", "") == "argparse" and g is not argparse.Namespace for g in allowed)


def test_eval_lm_scores_the_sgd_checkpoint_as_training_validated_it(sgd_run, tiny_bin):
    checkpoint, logged = sgd_run
    proc = run_fairseq("eval_lm", [tiny_bin, "--task", "awd_language_modeling", "--path", checkpoint,
                                   "--gen-subset", "valid", "--test-batch-size", "10", "--no-progress-bar"])
    assert eval_lm_loss(proc.stdout + proc.stderr) == pytest.approx(logged, abs=1e-3)


def test_interactive_loads_the_sgd_checkpoint(sgd_run, tiny_bin, tmp_path):
    checkpoint, _ = sgd_run
    (tmp_path / "in.txt").write_text("the game was\n", encoding="utf-8")
    proc = run_fairseq("interactive", [
        tiny_bin, "--task", "awd_language_modeling", "--path", checkpoint, "--input", tmp_path / "in.txt",
        "--sampling", "--beam", "1", "--max-len-b", "5", "--seed", "1",
    ])
    hypos = [line for line in proc.stdout.splitlines() if line.startswith("H-")]
    assert len(hypos) == 1 and "the game was" in hypos[0]


def test_hub_interface_loads_the_sgd_checkpoint(sgd_run, tiny_bin):
    from fairseq.models import MODEL_REGISTRY

    checkpoint, _ = sgd_run
    hub = MODEL_REGISTRY["awd_lstm"].from_pretrained(
        str(checkpoint.parent), checkpoint_file=checkpoint.name, data_name_or_path=str(tiny_bin)
    )
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    for name, tensor in hub.models[0].state_dict().items():
        assert torch.equal(tensor, saved[name]), name


def test_restore_file_resumes_from_the_sgd_checkpoint(sgd_run, tiny_bin, tmp_path):
    checkpoint, _ = sgd_run
    args = _sgd_args(tiny_bin, tmp_path / "resumed", "--restore-file", checkpoint, "--disable-validation")
    args[args.index("--max-update") + 1] = "3"
    out = run_fairseq("train", args)
    log = out.stdout + out.stderr
    assert re.search(r"Loaded checkpoint .*checkpoint_last\.pt \(epoch 1 @ 2 updates\)", log), log[-2000:]
    assert "num_updates 3" in log


def test_eval_lm_loads_a_pre_hydra_checkpoint(sgd_run, tiny_bin, tmp_path):
    """fairseq < 0.10 stored every option as one Namespace in `args` and no `cfg`; fairseq converts
    it on load (checkpoint_utils._upgrade_state_dict)."""
    from fairseq import options

    checkpoint, logged = sgd_run
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, input_args=[*map(str, _sgd_args(tiny_bin, tmp_path)), "--user-dir",
                                                           str(REPO / "awd_fairseq"), "--cpu"])
    assert isinstance(args, argparse.Namespace)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    old = {"args": args, "model": state["model"], "optimizer_history": state["optimizer_history"],
           "extra_state": state["extra_state"], "last_optimizer_state": state["last_optimizer_state"]}
    torch.save(old, tmp_path / "old.pt")
    proc = run_fairseq("eval_lm", [tiny_bin, "--task", "awd_language_modeling", "--path", tmp_path / "old.pt",
                                   "--gen-subset", "valid", "--test-batch-size", "10", "--no-progress-bar"])
    assert eval_lm_loss(proc.stdout + proc.stderr) == pytest.approx(logged, abs=1e-3)
