"""The comparison's parts from made-up runs: the table, the budgets, the speed read from a log, the
transformer's warm-up scaled to its updates (end to end: test_e2e_compare_lms.py)."""
import json

import pytest

from awd_fairseq.tools.compare import budget, report



def _eval(loss, tokens, seconds=10.0):
    return {"valid": {"loss": loss, "tokens": tokens[0], "seconds": seconds},
            "test": {"loss": loss + 0.1, "tokens": tokens[1], "seconds": seconds}}


def _row(name, valid_loss, tokens=(500, 487), pointer=True, dyneval=True):
    p = {"theta": 0.5, "lambda": 0.1, **_eval(valid_loss - 1, tokens, 11.0)} if pointer else None
    d = {"eta": 3e-5, "lambda": 2e-3, "epsilon": 2e-5, "bptt": 5, **_eval(valid_loss - 2, tokens, 250.0)} if dyneval else None
    return {"model": name, "notes": "", "caveat": "", "params": 24_000_000, "tokens_per_s": 1234.5,
            "peak_rss_mib": 900.0, "updates": 40, "tokens": 56_000.0, "epochs": 0.06, "train_seconds": 1200.0,
            "other_seconds": 90.0, "curve": [{"seconds": 60.0, "tokens": 28_000.0, "updates": 20, "loss": valid_loss + 1},
                                             {"seconds": 120.0, "tokens": 56_000.0, "updates": 40, "loss": valid_loss}],
            "eval": _eval(valid_loss, tokens), "pointer": p, "dyneval": d}


def test_table_reads_perplexity_or_bits_per_character():
    rows = [_row("awd_lstm", 6.0), _row("lstm_lm", 7.0, pointer=False, dyneval=False)]
    table = report.markdown_table(rows).splitlines()
    assert len(table) == 4 and "valid ppl" in table[0] and "bpc" not in table[0]
    cells = [c.strip() for c in table[2].split("|")][1:-1]
    assert cells[1:8] == ["24.00M", "40", "56,000", "0.06", "20.0", "1.5", "1234"]
    assert cells[8:14] == [f"{2 ** x:.2f}" for x in (6.0, 6.1, 5.0, 5.1, 4.0, 4.1)]
    assert cells[14] == "10 / 11 / 250"
    assert table[3].count("n/a") == 6  # lstm_lm: no pointer, no dynamic evaluation
    char = report.markdown_table(rows, char_level=True).splitlines()
    assert "valid bpc" in char[0] and [c.strip() for c in char[2].split("|")][9] == "6.000"


def test_the_notes_say_how_each_column_was_tuned_or_that_it_was_not_run():
    both = report.notes([_row("awd_lstm", 6.0)], "b", "eta and lambda tuned on valid", [])
    assert "`awd_lstm`: pointer theta 0.5, lambda 0.1; dynamic evaluation segments of 5" in both[1]
    assert both[2].startswith("The pointer's theta and lambda are tuned on all of valid")
    assert both[2].endswith("dynamic evaluation's eta and lambda tuned on valid.")
    neither = report.notes([_row("awd_lstm", 6.0, pointer=False, dyneval=False)], "b", None, [])
    assert neither[1] == "The pointer columns were not run; dynamic evaluation's columns were not run."


def test_scored_token_counts_are_checked():
    assert report.check_scored_tokens([_row("a", 6.0), _row("b", 7.0)]) == []
    bad = _row("b", 7.0)
    bad["dyneval"]["valid"]["tokens"] = 499
    problems = report.check_scored_tokens([_row("a", 6.0), bad])
    assert len(problems) == 1 and problems[0].startswith("valid") and "b dynamic evaluation" in problems[0]


def test_budgets_in_updates():
    speed = budget.Speed(seconds_per_update=0.5, tokens_per_update=1400.0)
    assert budget.Budget("updates", 40).updates() == 40
    assert budget.Budget("minutes", 10).updates(speed) == 1200  # 600 s / 0.5 s
    assert budget.Budget("tokens", 1e6).updates(speed) == 714  # 1e6 / 1400, rounded
    assert budget.Budget("minutes", 1e-6).updates(speed) == 1
    with pytest.raises(ValueError, match="choose from"):
        budget.Budget("hours", 1)
    with pytest.raises(ValueError, match="speed"):
        budget.Budget("tokens", 10).updates()


def _log(path, *records):
    path.write_text("".join(f"2026-12-01 21:00:{i:02d} | INFO | {tag} | {json.dumps(r)}\n"
                            for i, (tag, r) in enumerate(records)))
    return path


def test_speed_and_what_was_trained_from_the_log(tmp_path):
    log = _log(tmp_path / "train.log",
               ("train_inner", {"num_updates": "5", "wps": "100", "wpb": "1000"}),  # start-up: left out
               ("train_inner", {"num_updates": "10", "wps": "2000", "wpb": "1000"}),
               ("valid", {"valid_num_updates": "10", "valid_loss": "7.5"}),
               ("train", {"train_num_updates": "10", "train_wpb": "1100", "train_train_wall": "9"}),
               ("train_inner", {"num_updates": "15", "wps": "1000", "wpb": "1500"}),
               ("valid", {"valid_num_updates": "15", "valid_loss": "7"}),
               ("train", {"train_num_updates": "15", "train_wpb": "1500", "train_train_wall": "8"}))
    speed = budget.measured_speed(log)
    assert speed.seconds_per_update == pytest.approx((0.5 + 1.5) / 2) and speed.tokens_per_update == 1250
    assert budget.trained(log) == {"updates": 15, "tokens": 1100 * 10 + 1500 * 5, "train_seconds": 17.0}
    # validation points on the training-time and token axes: 5 x 10 s, 5 x 0.5 s, 5 x 1.5 s; tokens likewise
    assert report.curve(log) == [{"updates": 10, "seconds": 52.5, "tokens": 10_000.0, "loss": 7.5},
                                 {"updates": 15, "seconds": 60.0, "tokens": 17_500.0, "loss": 7.0}]


def test_curve_reads_the_training_loops_seconds_and_ends_where_the_run_ends(tmp_path):
    """A validation inside a log interval inflates wpb / wps; the interval's train_wall does not. A
    run ending between records is validated at its last update, not at the last record's."""
    log = _log(tmp_path / "train.log",
               ("valid", {"valid_num_updates": "40", "valid_loss": "8.5"}),
               ("train_inner", {"num_updates": "50", "wps": "800", "wpb": "1000", "train_wall": "40"}),
               ("valid", {"valid_num_updates": "50", "valid_loss": "8"}),
               ("valid", {"valid_num_updates": "70", "valid_loss": "7.5"}),
               ("train", {"train_num_updates": "70", "train_wpb": "1000", "train_train_wall": "57"}))
    assert report.curve(log) == [{"updates": 40, "seconds": 32.0, "tokens": 40_000.0, "loss": 8.5},
                                 {"updates": 50, "seconds": 40.0, "tokens": 50_000.0, "loss": 8.0},
                                 {"updates": 70, "seconds": 57.0, "tokens": 70_000.0, "loss": 7.5}]


def test_the_transformer_warm_up_is_scaled_to_the_budget():
    from awd_fairseq.tools.compare.specs import TRANSFORMER_WARMUP_FRACTION, model_specs

    specs = model_specs("data-bin/x", "tiny")
    assert TRANSFORMER_WARMUP_FRACTION == 4000 / 50000  # fairseq's examples/language_model recipe
    assert specs["transformer_lm"].schedule(1000) == ["--warmup-updates", "80"]
    assert specs["transformer_lm"].schedule(5) == ["--warmup-updates", "1"]
    assert "--warmup-updates" not in specs["transformer_lm"].train
    assert specs["awd_lstm"].schedule(1000) == [] and specs["lstm_lm"].dyneval is None


def test_the_plots_mark_the_published_validation_figure_at_the_recipes_sizes_only():
    from pathlib import Path

    from awd_fairseq.tools.compare.pipeline import Comparison, published_valid
    from awd_fairseq.tools.recipes import RECIPES

    c = Comparison(data="x", out=Path("."), budget=budget.Budget("updates", 1), qrnn_recipe="wt2_qrnn")
    assert published_valid(c) == {"awd_lstm": 61.2, "qrnn": RECIPES["wt2_qrnn"].published["train"][0],
                                  "awd_lstm_mos": 56.54}  # the MoS paper gives the fine-tuned model's
    c.size = "small"
    assert published_valid(c) == {}


class _Vocabulary:
    """A task stand-in with PTB's vocabulary size, for building the compared models."""

    def __init__(self, n=10_000):
        from fairseq.data import Dictionary

        self.target_dictionary = self.source_dictionary = Dictionary()
        for i in range(n - len(self.target_dictionary)):
            self.target_dictionary.add_symbol(f"w{i}")


def _parameters_at(size: str, model_class, config_class) -> int:
    from awd_fairseq.tools.compare.specs import SIZES

    name = model_class.__name__
    overrides = {}
    for flag in SIZES[size][{"AWDLSTMModel": "awd_lstm", "MogrifierLSTMModel": "mogrifier_lstm"}[name]]:
        if flag.startswith("++model."):
            key, value = flag[len("++model."):].split("=")
            overrides[key] = int(value)
    model = model_class.build_model(config_class(**overrides), _Vocabulary())
    return sum(p.numel() for p in model.parameters())


def test_the_small_mogrifier_has_the_small_awd_lstms_parameters():
    """`--size small` compares the two LSTMs at equal parameters on PTB's vocabulary (within 5%)."""
    from awd_fairseq.models.awd_lstm import AWDLSTMModel, RecurrentLMConfig
    from awd_fairseq.models.mogrifier_lstm import MogrifierLSTMConfig, MogrifierLSTMModel

    awd = _parameters_at("small", AWDLSTMModel, RecurrentLMConfig)
    mogrifier = _parameters_at("small", MogrifierLSTMModel, MogrifierLSTMConfig)
    assert 4.5e6 < awd < 5e6
    assert abs(mogrifier / awd - 1) < 0.05, (mogrifier, awd)


@pytest.mark.parametrize("size", ["small", "tiny"])
@pytest.mark.parametrize("name,recipe", [
    ("awd_lstm", "ptb_awd_lstm"), ("awd_lstm", "wt2_awd_lstm"), ("qrnn", "ptb_qrnn"), ("qrnn", "wt2_qrnn"),
    ("awd_lstm_mos", "ptb_awd_lstm_mos"), ("awd_lstm_mos", "wt2_awd_lstm_mos"),
    ("mogrifier_lstm", "ptb_mogrifier"), ("mogrifier_lstm", "wt2_mogrifier"),
])
def test_every_compared_recipe_builds_at_the_reduced_sizes(name, recipe, size):
    """`--size small/tiny` with the PTB and the WikiText-2 recipes gives models fairseq can build
    (wt2_mogrifier's MoS layer needs its own width), and the sizes reach the model."""
    from fairseq.models import build_model

    from awd_fairseq.tools import recipes
    from awd_fairseq.tools.compare.specs import recipe_sizes

    overrides = recipe_sizes(name, recipe, size)
    cfg = recipes.compose(recipe, ["task.data=x", *overrides])
    model = build_model(cfg.model, _Vocabulary(1000))
    emsize = next(int(f.split("=")[1]) for f in overrides if f.startswith("++model.emsize="))
    assert model.decoder.embed_tokens.weight.shape == (1000, emsize)
