"""Every recipe in awd_fairseq/config runs each of its stages (fairseq-hydra-train, fine-tuning,
fairseq-eval-lm, the cache pointer) for a few updates of a tiny model on a tiny stand-in corpus
cut from the embedded WikiText-2, through the real command-line tools."""
import os
import subprocess

import pytest
import torch
from omegaconf import OmegaConf

from awd_fairseq.tools import fairseq_logs
from awd_fairseq.tools import recipes

from helpers import REPO, head_lines, make_data_bin

# ++: set whether or not the recipe lists the field (task and model fields it leaves at their default it does not)
TINY = ["++model.emsize=16", "++model.nhid=16", "dataset.batch_size=4", "++task.bptt=10", "optimization.max_update=2",
        "common.cpu=true", "common.log_interval=1"]
# the Mogrifier recipes validate on 64 streams; the MoS one's last layer is --nhidlast wide
PER_RECIPE = {"ptb_mogrifier": ["task.eval_batch_size=4"],
              "wt2_mogrifier": ["task.eval_batch_size=4", "++model.nhidlast=16"]}


@pytest.fixture(scope="module")
def micro_bin(tmp_path_factory):
    """~4k training tokens, ~500 for valid and test: validation and scoring stay quick."""
    src = REPO / "data" / "wikitext-2"
    return make_data_bin(tmp_path_factory.mktemp("micro"), {
        "train": head_lines(src / "train.txt.xz", 100), "valid": head_lines(src / "valid.txt.xz", 12),
        "test": head_lines(src / "test.txt.xz", 12)})


def _run(cmd, cwd):
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)  # hydra writes its log in cwd
    assert proc.returncode == 0, f"{' '.join(cmd)}\nexit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("name", sorted(recipes.RECIPES))
def test_recipe_runs_every_stage(name, micro_bin, tmp_path):
    recipe = recipes.RECIPES[name]
    save = tmp_path / "ck"
    commands = recipes.stage_commands(recipe, str(micro_bin), str(save), overrides=TINY + PER_RECIPE.get(name, []))
    assert list(commands) == recipe.stages
    metric = "bpc" if recipe.data in ("pennchar", "enwik8") else "ppl"
    for stage in [s for s in ("train", "finetune") if s in commands]:
        out = _run(commands[stage], tmp_path)
        (valid,) = fairseq_logs.valid(out)
        assert metric in valid and valid["num_updates"] == 2, (stage, valid)
        if metric == "bpc":
            assert "ppl" not in valid and valid["bpc"] == pytest.approx(valid["loss"], abs=1e-3)
        # what fairseq-hydra-train built is what recipes.compose resolves
        config = name + ("_finetune" if stage == "finetune" else "")
        saved = torch.load(save.parent / (save.name + ("_finetune" if stage == "finetune" else "")) / "checkpoint_best.pt",
                           map_location="cpu", weights_only=False)["cfg"]
        overrides = [a for a in commands[stage] if "=" in a and not a.startswith(("--", "recipe="))]
        composed = recipes.compose(config, overrides)
        assert saved["model"] == OmegaConf.to_container(composed.model), stage
        assert saved["optimizer"]["_name"] == composed.optimizer._name
    tiny_scoring = {"eval": ["--cpu"], "pointer": ["--cpu", "--bptt=10", "--pointer-window=50"]}
    for stage in [s for s in ("eval", "pointer") if s in commands]:
        summary = fairseq_logs.eval_lm_summary(_run([*commands[stage], *tiny_scoring[stage]], tmp_path))
        assert summary.tokens > 400 and 0 < summary.loss_base2 < 20, (stage, summary)
