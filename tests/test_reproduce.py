"""scripts/reproduce.py's parts: the published figures and dynamic-evaluation settings against the
docs' tables (the quoted READMEs and papers), the shortened schedule against its rule written out."""
import math
import re

import pytest

from awd_fairseq.tools import recipes, reproduce

from helpers import REPO


def _table_rows(doc: str, first_column: str):
    text = (REPO / "docs" / doc).read_text()
    return [line for line in text.splitlines() if line.startswith(f"| {first_column}")]


def _numbers(cell: str):
    return [float(x) for x in re.findall(r"\d+\.\d+", cell)]


@pytest.mark.parametrize("name", sorted(recipes.RECIPES))
def test_published_figures_are_docs_recipes_table(name):
    recipe = recipes.RECIPES[name]
    (row,) = _table_rows("recipes.md", f"`{name}`")
    quoted = _numbers(row.split("|")[4])  # original's valid / test (before fine-tuning; fine-tuned; + pointer)
    ours = [v for stage in ("train", "finetune", "pointer") for v in recipe.published.get(stage, ()) if v is not None]
    assert ours == quoted, (name, row)


DYNEVAL_DOC = {  # docs/dynamic_evaluation.md's rows: the papers' settings in this plugin's flags
    "ptb_awd_lstm": "AWD-LSTM PTB", "wt2_awd_lstm": "AWD-LSTM WikiText-2", "ptb_qrnn": "AWD-QRNN PTB",
    "wt2_qrnn": "AWD-QRNN WikiText-2", "ptb_awd_lstm_mos": "AWD-LSTM-MoS PTB", "wt2_awd_lstm_mos": "AWD-LSTM-MoS WikiText-2",
}


@pytest.mark.parametrize("name", sorted(DYNEVAL_DOC))
def test_dynamic_evaluation_settings_and_figures_are_docs_dynamic_evaluation_table(name):
    recipe = recipes.RECIPES[name]
    (row,) = _table_rows("dynamic_evaluation.md", DYNEVAL_DOC[name] + ",")
    published, _, here = row.split("|")[1:4]
    assert recipe.published["dyneval"][1] == _numbers(published)[-1]  # the test figure
    if "the same flags" in here:  # WikiText-2 AWD-LSTM: the PTB row's flags
        (ptb,) = _table_rows("dynamic_evaluation.md", "AWD-LSTM PTB,")
        here = ptb.split("|")[3]
    flags = dict(re.findall(r"--(dyneval-[a-z-]+) (\S+)`?", here.replace("`", " ")))
    ours = {k.replace("_", "-"): v for k, v in recipe.dyneval.items()}
    assert {k: str(v) for k, v in ours.items()} == flags


def test_every_recipe_with_a_published_stage_runs_it():
    for recipe in recipes.RECIPES.values():
        assert set(recipe.published) <= set(reproduce.available_stages(recipe)), recipe.name


@pytest.mark.parametrize("name, scale", [("ptb_awd_lstm", 0.01), ("enwik8_awd_lstm", 0.1), ("pennchar_awd_lstm", 0.003)])
def test_the_shortened_schedule_scales_epochs_and_milestones(name, scale):
    cfg = recipes.compose(name)
    overrides = dict(o.split("=", 1) for o in reproduce.schedule_overrides(name, scale))
    assert int(overrides["optimization.max_epoch"]) == max(1, math.ceil(cfg.optimization.max_epoch * scale))
    when = list(cfg.lr_scheduler.get("when") or [])
    if when:
        assert overrides["lr_scheduler.when"] == "[" + ",".join(str(max(1, math.ceil(w * scale))) for w in when) + "]"
    else:
        assert "lr_scheduler.when" not in overrides
    assert reproduce.schedule_overrides(name, 1.0) == []
    with pytest.raises(ValueError, match="--max-epoch-scale 1.5"):
        reproduce.schedule_overrides(name, 1.5)
