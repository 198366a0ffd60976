"""The AWD-LSTM-MoS recipes in awd_fairseq/config against zihangdai/mos: its README's command lines
and main.py / finetune.py defaults, transcribed below flag by flag."""
import shlex

import pytest

from awd_fairseq.tools import recipes

ORIGINAL = {
    "ptb_awd_lstm_mos": dict(
        main="python main.py --data data/penn --dropouti 0.4 --dropoutl 0.29 --dropouth 0.225 --seed 28 --batch_size 12 --lr 20.0 --epoch 1000 --nhid 960 --nhidlast 620 --emsize 280 --n_experts 15  --save PTB --single_gpu",
        finetune="python finetune.py --data data/penn --dropouti 0.4 --dropoutl 0.29 --dropouth 0.225 --seed 28 --batch_size 12 --lr 25.0 --epoch 1000 --nhid 960 --emsize 280 --n_experts 15  --save PATH_TO_FOLDER --single_gpu",
    ),
    "wt2_awd_lstm_mos": dict(
        main="python main.py --epochs 1000 --data data/wikitext-2 --save WT2 --dropouth 0.2 --seed 1882 --n_experts 15 --nhid 1150 --nhidlast 650 --emsize 300 --batch_size 15 --lr 15.0 --dropoutl 0.29 --small_batch_size 5 --max_seq_len_delta 20 --dropouti 0.55 --single_gpu",
        finetune="python finetune.py --epochs 1000 --data data/wikitext-2 --save PATH_TO_FOLDER --dropouth 0.2 --seed 1882 --n_experts 15 --nhid 1150 --emsize 300 --batch_size 15 --lr 20.0 --dropoutl 0.29 --small_batch_size 5 --max_seq_len_delta 20 --dropouti 0.55 --single_gpu",
    ),
}

# zihangdai/mos main.py's argparse defaults (finetune.py: batch_size 80, no --nhidlast; the model
# comes from the trained checkpoint there)
MAIN_DEFAULTS = dict(
    data="./penn/", emsize=400, nhid=1150, nhidlast=-1, nlayers=3, lr=30.0, clip=0.25, epochs=8000, batch_size=20,
    bptt=70, dropout=0.4, dropouth=0.3, dropouti=0.65, dropoute=0.1, dropoutl=-0.2, wdrop=0.5, seed=1111, nonmono=5,
    log_interval=200, alpha=2.0, beta=1.0, wdecay=1.2e-6, n_experts=10, small_batch_size=-1, max_seq_len_delta=40,
    single_gpu=False, save="EXP",
)
FINETUNE_DEFAULTS = {**{k: v for k, v in MAIN_DEFAULTS.items() if k != "nhidlast"}, "batch_size": 80}
DATA = {"data/penn": "ptb", "data/wikitext-2": "wikitext-2"}
MODEL_FLAGS = ("emsize", "nhid", "nhidlast", "nlayers", "dropout", "dropouth", "dropouti", "dropoute", "dropoutl",
               "wdrop", "n_experts")


def parse(line, defaults):
    """argparse as the scripts use it: `--epoch` abbreviates `--epochs`, `--single_gpu` is a switch."""
    values, key = dict(defaults), None
    for word in shlex.split(line)[2:]:
        if word.startswith("--"):
            key = next(k for k in sorted(defaults) if k == word[2:] or k.startswith(word[2:]))
            if isinstance(defaults[key], bool):
                values[key], key = True, None
        else:
            default = defaults[key]
            values[key] = type(default)(word) if isinstance(default, (int, float)) else word
    # main.py: nhidlast < 0 -> emsize, dropoutl < 0 -> dropouth
    if values.get("nhidlast", 0) < 0:
        values["nhidlast"] = values["emsize"]
    if values["dropoutl"] < 0:
        values["dropoutl"] = values["dropouth"]
    return values


CASES = [(name, stage) for name in ORIGINAL for stage in ("main", "finetune")]


def test_both_recipes_are_registered_with_a_finetuning_stage():
    for name in ORIGINAL:
        assert recipes.RECIPES[name].finetune and recipes.RECIPES[name].data == DATA[parse(ORIGINAL[name]["main"], MAIN_DEFAULTS)["data"]]


@pytest.mark.parametrize("name,stage", CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_recipe_matches_the_original(name, stage):
    orig = parse(ORIGINAL[name][stage], MAIN_DEFAULTS if stage == "main" else FINETUNE_DEFAULTS)
    config = name + ("_finetune" if stage == "finetune" else "")
    overrides = ["task.data=x"] + (["checkpoint.finetune_from_model=base/checkpoint_best.pt"] if stage == "finetune" else [])
    cfg = recipes.compose(config, overrides)
    pairs = {
        "lr": (orig["lr"], cfg.optimization.lr[0]),
        "clip": (orig["clip"], cfg.optimization.clip_norm),
        "epochs": (orig["epochs"], cfg.optimization.max_epoch),
        "batch_size": (orig["batch_size"], cfg.dataset.batch_size),  # small_batch_size: memory only
        "bptt": (orig["bptt"], cfg.task.bptt),
        "max_seq_len_delta": (orig["max_seq_len_delta"], cfg.task.bptt_max_extra),
        "seed": (orig["seed"], cfg.common.seed),
        "alpha": (orig["alpha"], cfg.criterion.alpha),
        "beta": (orig["beta"], cfg.criterion.beta),
        "wdecay": (orig["wdecay"], cfg.optimizer.wdecay),
        "nonmono": (orig["nonmono"], cfg.optimizer.nonmono),
        "optimizer": ((stage == "finetune",) * 2, (cfg.optimizer.asgd_from_start, cfg.optimizer.stop_on_nonmono)),
        "tied": (True, cfg.model.tied),
    }
    if stage == "main":  # finetune.py loads the trained model: its model flags do not apply
        main = orig
    else:
        main = parse(ORIGINAL[name]["main"], MAIN_DEFAULTS)
    pairs.update({k: (main[k], cfg.model[k]) for k in MODEL_FLAGS})
    wrong = {flag: pair for flag, pair in pairs.items() if pair[0] != pair[1]}
    assert not wrong, f"{config}: flag: (original, recipe) {wrong}"
