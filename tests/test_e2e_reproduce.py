"""scripts/reproduce.py end to end on a micro corpus (valid and test longer than the PTB pointer setting's 5000-token windows), a tiny model and a shortened schedule: every
stage of ptb_awd_lstm runs and is scored; a run stopped between stages, and one killed in the middle
of training, continue where they stopped and end as the uninterrupted run does."""
import json
import os
import subprocess
import sys

import pytest
import torch

from awd_fairseq.tools import recipes, reproduce

from helpers import REPO, eval_lm_loss, head_lines, make_data_bin, run_fairseq

TINY = ["++model.emsize=16", "++model.nhid=16", "++model.nlayers=2", "dataset.batch_size=4", "++task.bptt=10",
        "common.cpu=true", "common.log_interval=10"]
SCALE = 0.002  # 500 epochs -> 1, for training and for fine-tuning
RECIPE = recipes.RECIPES["ptb_awd_lstm"]


@pytest.fixture(scope="module")
def micro_bin(tmp_path_factory):
    src = REPO / "data" / "wikitext-2"
    return make_data_bin(tmp_path_factory.mktemp("micro"), {
        "train": head_lines(src / "train.txt.xz", 100), "valid": head_lines(src / "valid.txt.xz", 150),
        "test": head_lines(src / "test.txt.xz", 150)})


def script(data, out, *extra):
    cmd = [sys.executable, str(REPO / "scripts" / "reproduce.py"), RECIPE.name, str(data), "--save-dir", str(out),
           "--max-epoch-scale", str(SCALE), *[f"--override={o}" for o in TINY], "--scoring-flag=--cpu", *extra]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def whole_run(micro_bin, tmp_path_factory):
    """A run stopped after training (as if killed between stages), then the same command to the end."""
    out = tmp_path_factory.mktemp("whole")
    first = script(micro_bin, out, "--stages", "train")
    stopped = {"results": json.loads((out / "results.json").read_text()), "stdout": first.stdout,
               "train_log_mtime": (out / "logs" / "train.log").stat().st_mtime}
    return out, script(micro_bin, out), stopped


def test_every_stage_is_scored_beside_the_published_figures(whole_run, micro_bin):
    out, proc, _ = whole_run
    rows = json.loads((out / "results.json").read_text())
    assert [r["stage"] for r in rows] == ["train", "finetune", "pointer", "dyneval"]
    for row in rows:
        assert 1 < row["valid"] < 1e5 and 1 < row["test"] < 1e5, row
        assert tuple(row["published"]) == RECIPE.published[row["stage"]]
        assert f"| {row['stage']} (" in proc.stdout and f"{row['published'][1]:.2f}" in proc.stdout
    # the dynamic-evaluation figure is fairseq-eval-lm with the reference's settings, run directly
    checkpoint = out / "checkpoints" / "train_finetune" / "checkpoint_best.pt"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in RECIPE.dyneval.items()]
    direct = run_fairseq("eval_lm", [micro_bin, "--path", checkpoint, "--task", "awd_dynamic_eval", *flags,
                                     "--gen-subset", "test"])
    assert 2 ** eval_lm_loss(direct.stdout + direct.stderr) == pytest.approx(rows[3]["test"], rel=1e-3)


def test_a_run_stopped_between_stages_continues(whole_run):
    out, proc, stopped = whole_run
    assert [r["stage"] for r in stopped["results"]] == ["train"] and "finetune" not in stopped["stdout"]
    assert "ptb_awd_lstm train: reusing the finished run" in proc.stderr
    assert (out / "logs" / "train.log").stat().st_mtime == stopped["train_log_mtime"]  # not trained again
    final = json.loads((out / "results.json").read_text())
    assert (final[0]["valid"], final[0]["test"]) == (stopped["results"][0]["valid"], stopped["results"][0]["test"])


def test_a_training_killed_midway_resumes_from_its_checkpoint(whole_run, micro_bin, tmp_path):
    out = tmp_path / "killed"
    # what a kill leaves: the training stage's command stopped after 7 updates, checkpoint_last.pt at update 7
    train = recipes.stage_commands(RECIPE, str(micro_bin), str((out / "checkpoints" / "train").resolve()),
                                   overrides=[*TINY, *reproduce.schedule_overrides(RECIPE.name, SCALE)])["train"]
    subprocess.run([*train, "optimization.max_update=7"], check=True, capture_output=True, cwd=tmp_path)
    script(micro_bin, out, "--stages", "train")
    log = (out / "logs" / "train.log").read_text()
    assert "@ 7 updates" in log  # fairseq's "Loaded checkpoint ... (epoch 1 @ 7 updates)"
    resumed = torch.load(out / "checkpoints" / "train" / "checkpoint_last.pt", weights_only=False)
    whole = torch.load(whole_run[0] / "checkpoints" / "train" / "checkpoint_last.pt", weights_only=False)
    assert resumed["optimizer_history"][-1]["num_updates"] == whole["optimizer_history"][-1]["num_updates"]
    for name, value in whole["model"].items():
        assert torch.equal(value, resumed["model"][name]), name
