"""The recipes in awd_fairseq/config against the original: salesforce/awd-lstm-lm README's command
lines and main.py / finetune.py / pointer.py defaults, transcribed below flag by flag; and the
hydra route (fairseq-hydra-train's composition) against the argparse route (fairseq-train's
parser fed the generated flags).

Adding a recipe: one entry in ORIGINAL (and one Recipe in awd_fairseq/tools/recipes.py)."""
import shlex
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from awd_fairseq.tools import recipes
from awd_fairseq.models.awd_lstm import parse_cutoffs

# The original README, "Experiments": recipe -> its main.py / finetune.py / pointer.py lines
ORIGINAL = {
    "ptb_awd_lstm": dict(
        main="python main.py --batch_size 20 --data data/penn --dropouti 0.4 --dropouth 0.25 --seed 141 --epoch 500 --save PTB.pt",
        finetune="python finetune.py --batch_size 20 --data data/penn --dropouti 0.4 --dropouth 0.25 --seed 141 --epoch 500 --save PTB.pt",
        pointer="python pointer.py --data data/penn --save PTB.pt --lambdasm 0.1 --theta 1.0 --window 500 --bptt 5000",
    ),
    "ptb_qrnn": dict(
        main="python -u main.py --model QRNN --batch_size 20 --clip 0.2 --wdrop 0.1 --nhid 1550 --nlayers 4 --emsize 400 --dropouth 0.3 --seed 9001 --dropouti 0.4 --epochs 550 --save PTB.pt",
        finetune="python -u finetune.py --model QRNN --batch_size 20 --clip 0.2 --wdrop 0.1 --nhid 1550 --nlayers 4 --emsize 400 --dropouth 0.3 --seed 404 --dropouti 0.4 --epochs 300 --save PTB.pt",
        pointer="python pointer.py --model QRNN --lambdasm 0.1 --theta 1.0 --window 500 --bptt 5000 --save PTB.pt",
    ),
    "wt2_awd_lstm": dict(
        main="python main.py --epochs 750 --data data/wikitext-2 --save WT2.pt --dropouth 0.2 --seed 1882",
        finetune="python finetune.py --epochs 750 --data data/wikitext-2 --save WT2.pt --dropouth 0.2 --seed 1882",
        pointer="python pointer.py --save WT2.pt --lambdasm 0.1279 --theta 0.662 --window 3785 --bptt 2000 --data data/wikitext-2",
    ),
    "wt2_qrnn": dict(
        main="python -u main.py --epochs 500 --data data/wikitext-2 --clip 0.25 --dropouti 0.4 --dropouth 0.2 --nhid 1550  --nlayers 4 --seed 4002 --model QRNN --wdrop 0.1 --batch_size 40 --save WT2.pt",
        finetune="python finetune.py --epochs 500 --data data/wikitext-2 --clip 0.25 --dropouti 0.4 --dropouth 0.2 --nhid 1550 --nlayers 4 --seed 4002 --model QRNN --wdrop 0.1 --batch_size 40 --save WT2.pt",
        pointer="python -u pointer.py --save WT2.pt --model QRNN --lambdasm 0.1279 --theta 0.662 --window 3785 --bptt 2000 --data data/wikitext-2",
    ),
    "wt103_qrnn": dict(
        main="python -u main.py --epochs 14 --nlayers 4 --emsize 400 --nhid 2500 --alpha 0 --beta 0 --dropoute 0 --dropouth 0.1 --dropouti 0.1 --dropout 0.1 --wdrop 0 --wdecay 0 --bptt 140 --batch_size 60 --optimizer adam --lr 1e-3 --data data/wikitext-103 --save WT103.12hr.QRNN.pt --when 12 --model QRNN",
    ),
    "pennchar_awd_lstm": dict(
        main="python -u main.py --epochs 500 --nlayers 3 --emsize 200 --nhid 1000 --alpha 0 --beta 0 --dropoute 0 --dropouth 0.25 --dropouti 0.1 --dropout 0.1 --wdrop 0.5 --wdecay 1.2e-6 --bptt 150 --batch_size 128 --optimizer adam --lr 2e-3 --data data/pennchar --save PTBC.pt --when 300 400",
    ),
    "enwik8_awd_lstm": dict(
        main="python -u main.py --epochs 50 --nlayers 3 --emsize 400 --nhid 1840 --alpha 0 --beta 0 --dropoute 0 --dropouth 0.1 --dropouti 0.1 --dropout 0.4 --wdrop 0.2 --wdecay 1.2e-6 --bptt 200 --batch_size 128 --optimizer adam --lr 1e-3 --data data/enwik8 --save ENWIK8.pt --when 25 35",
    ),
}

# main.py's argparse defaults (finetune.py: the same, without --optimizer / --when / --resume)
MAIN_DEFAULTS = dict(
    data="data/penn", model="LSTM", emsize=400, nhid=1150, nlayers=3, lr=30.0, clip=0.25, epochs=8000,
    batch_size=80, bptt=70, dropout=0.4, dropouth=0.3, dropouti=0.65, dropoute=0.1, wdrop=0.5, seed=1111,
    nonmono=5, log_interval=200, alpha=2.0, beta=1.0, wdecay=1.2e-6, optimizer="sgd", when=[-1],
)
FINETUNE_DEFAULTS = {k: v for k, v in MAIN_DEFAULTS.items() if k not in ("optimizer", "when")}
POINTER_DEFAULTS = dict(data="data/penn", model="LSTM", bptt=5000, window=3785, theta=0.6625523432485668,
                        lambdasm=0.12785920428335693)
DATA = {"data/penn": "ptb", "data/wikitext-2": "wikitext-2", "data/wikitext-103": "wikitext-103",
        "data/pennchar": "pennchar", "data/enwik8": "enwik8"}
# vocabulary sizes of the original's corpora (data.Corpus over train + valid + test, with <eos>)
VOCAB = {"ptb": 10000, "wikitext-2": 33278, "wikitext-103": 267735, "pennchar": 50, "enwik8": 205}
LIST_FLAGS = {"when"}


def original_splits(ntokens):
    """main.py's split-softmax rule, transcribed (main.py, `if not criterion:`)."""
    if ntokens > 500000:
        return [4200, 35000, 180000]
    if ntokens > 75000:
        return [2800, 20000, 76000]
    return []


def parse_original(line, defaults):
    """argparse as the original scripts use it: `--epoch` is a prefix of `--epochs`, `--when` takes several."""
    words = shlex.split(line)[2:] if shlex.split(line)[1] == "-u" else shlex.split(line)[1:]
    if words and words[0].endswith(".py"):
        words = words[1:]
    values, key = dict(defaults), None
    for word in words:
        if word.startswith("--"):
            name = word[2:]
            key = next(k for k in sorted(defaults) + ["save"] if k == name or k.startswith(name))
            values[key] = [] if key in LIST_FLAGS else None
        elif key in LIST_FLAGS:
            values[key].append(int(word))
        else:
            default = defaults.get(key)
            values[key] = type(default)(word) if isinstance(default, (int, float)) and not isinstance(default, bool) else word
    return values


def model_kind(cfg):
    from fairseq.models import ARCH_MODEL_NAME_REGISTRY

    name = cfg.model._name
    return {"awd_lstm": "LSTM", "qrnn": "QRNN"}[ARCH_MODEL_NAME_REGISTRY.get(name, name)]


def expected_vs_resolved(orig, cfg, recipe, stage):
    """(original value, resolved value) for every flag of main.py / finetune.py."""
    adam = orig.get("optimizer") == "adam"
    pairs = {
        "data": (DATA[orig["data"].rstrip("/")], recipe.data),
        "model": (orig["model"], model_kind(cfg)),
        **{k: (orig[k], cfg.model[k]) for k in ("emsize", "nhid", "nlayers", "dropout", "dropouth", "dropouti", "dropoute", "wdrop")},
        "tied": (True, cfg.model.tied),  # main.py: args.tied = True; finetune.py: --tied store_false, not given
        "lr": (orig["lr"], cfg.optimization.lr[0]),
        "clip": (orig["clip"], cfg.optimization.clip_norm),
        "epochs": (orig["epochs"], cfg.optimization.max_epoch),
        "batch_size": (orig["batch_size"], cfg.dataset.batch_size),
        "bptt": (orig["bptt"], cfg.task.bptt),
        "seed": (orig["seed"], cfg.common.seed),
        "log_interval": (orig["log_interval"], cfg.common.log_interval),
        "alpha": (orig["alpha"], cfg.criterion.alpha),
        "beta": (orig["beta"], cfg.criterion.beta),
        "wdecay": (orig["wdecay"], cfg.optimizer.wdecay),  # L2 in both: nt_asgd and awd_adam
        "splits": (original_splits(VOCAB[recipe.data]), parse_cutoffs(cfg.model.split_softmax_cutoffs, VOCAB[recipe.data])),
        "char_level": (recipe.data in ("pennchar", "enwik8"), cfg.criterion.char_level),
    }
    if stage == "main":
        pairs["optimizer"] = (orig["optimizer"], {"nt_asgd": "sgd", "awd_adam": "adam"}[cfg.optimizer._name])
        pairs["when"] = ([w for w in orig["when"] if w > 0], list(cfg.lr_scheduler.when))
        pairs["bptt + 10 cap"] = (None, cfg.task.bptt_max_extra)  # commented out in main.py
    else:  # finetune.py: ASGD from the first step, exit when the trigger fires, windows <= bptt + 10
        pairs["optimizer"] = ("asgd from start, stop on nonmono",
                              (cfg.optimizer._name, cfg.optimizer.asgd_from_start, cfg.optimizer.stop_on_nonmono) == ("nt_asgd", True, True)
                              and "asgd from start, stop on nonmono")
        pairs["bptt + 10 cap"] = (10, cfg.task.bptt_max_extra)
    if not adam:
        pairs["nonmono"] = (orig["nonmono"], cfg.optimizer.nonmono)
    if stage == "main" and not adam:
        pairs["asgd from start"] = (False, cfg.optimizer.asgd_from_start)
    return pairs


CASES = [(name, stage) for name, lines in ORIGINAL.items() for stage in ("main", "finetune") if stage in lines]
# recipes of other reference code, with their own table: name -> its entry points
OTHER_TABLES = {  # tests/test_mixture_of_softmaxes_recipes.py (zihangdai/mos)
    "ptb_awd_lstm_mos": {"ptb_awd_lstm_mos", "ptb_awd_lstm_mos_finetune"},
    "wt2_awd_lstm_mos": {"wt2_awd_lstm_mos", "wt2_awd_lstm_mos_finetune"},
    # tests/test_mogrifier_recipes.py (deepmind/lamb)
    "ptb_mogrifier": {"ptb_mogrifier"},
    "wt2_mogrifier": {"wt2_mogrifier"},
}


def test_every_recipe_is_in_the_table():
    entry_points = {p.stem for p in (recipes.CONFIG_DIR / "recipe").glob("*.yaml")}
    assert set(ORIGINAL) | set(OTHER_TABLES) == set(recipes.RECIPES)
    assert entry_points == {n for n, stage in CASES for n in [n + ("_finetune" if stage == "finetune" else "")]} | set().union(*OTHER_TABLES.values())
    for name, lines in ORIGINAL.items():
        assert recipes.RECIPES[name].finetune == ("finetune" in lines)
        assert bool(recipes.RECIPES[name].pointer) == ("pointer" in lines)


@pytest.mark.parametrize("name,stage", CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_recipe_matches_the_original(name, stage):
    recipe = recipes.RECIPES[name]
    orig = parse_original(ORIGINAL[name][stage], MAIN_DEFAULTS if stage == "main" else FINETUNE_DEFAULTS)
    config = name + ("_finetune" if stage == "finetune" else "")
    cfg = recipes.compose(config, ["task.data=x", "checkpoint.finetune_from_model=base/checkpoint_best.pt"][: 1 + (stage == "finetune")])
    wrong = {flag: pair for flag, pair in expected_vs_resolved(orig, cfg, recipe, stage).items() if pair[0] != pair[1]}
    assert not wrong, f"{config}: flag: (original, recipe) {wrong}"


@pytest.mark.parametrize("name", [n for n, lines in ORIGINAL.items() if "pointer" in lines])
def test_pointer_stage_matches_pointer_py(name):
    orig = parse_original(ORIGINAL[name]["pointer"], POINTER_DEFAULTS)
    recipe = recipes.RECIPES[name]
    assert DATA[orig["data"]] == recipe.data
    expected = dict(pointer_window=orig["window"], pointer_theta=orig["theta"], pointer_lambda=orig["lambdasm"], bptt=orig["bptt"])
    assert dict(recipe.pointer) == expected
    assert model_kind(recipes.compose(name, ["task.data=x"])) == orig["model"]


def test_config_files_hold_only_what_differs_from_the_defaults():
    """Every task / model / criterion / optimizer / lr_scheduler value a YAML file sets differs from
    the dataclass default it would otherwise get (a named architecture's base: its model's), and
    every architecture of our models has its file."""
    import dataclasses

    from fairseq.models import ARCH_MODEL_INV_REGISTRY, ARCH_MODEL_NAME_REGISTRY, MODEL_DATACLASS_REGISTRY
    from fairseq.registry import REGISTRIES
    from fairseq.tasks import TASK_DATACLASS_REGISTRY

    def defaults(group, name):
        registry = {"task": TASK_DATACLASS_REGISTRY, "model": MODEL_DATACLASS_REGISTRY}.get(group)
        dc = (registry or REGISTRIES[group]["dataclass_registry"])[ARCH_MODEL_NAME_REGISTRY.get(name, name)]
        return {f.name: f.default for f in dataclasses.fields(dc)}

    ours = {a for m in ("awd_lstm", "qrnn", "awd_lstm_mos") for a in ARCH_MODEL_INV_REGISTRY[m]}
    assert {p.stem for p in (recipes.CONFIG_DIR / "model").glob("*.yaml")} == ours
    checked = 0
    for path in recipes.CONFIG_DIR.rglob("*.yaml"):
        data = OmegaConf.to_container(OmegaConf.load(path))
        groups = {"model": data} if path.parent.name == "model" else data
        # the component a group configures: named in the file, else in the recipe it composes (the
        # shared awd/finetune.yaml: finetune.py's averaged SGD, nt_asgd)
        composed = recipes.compose(path.stem, ["task.data=x", "checkpoint.finetune_from_model=x"]) \
            if path.parent.name == "recipe" else {"optimizer": {"_name": "nt_asgd"}, "task": {"_name": "awd_language_modeling"}}
        for group, values in groups.items():
            if group not in ("task", "model", "criterion", "optimizer", "lr_scheduler"):
                continue
            name = values.get("_name") or composed[group]["_name"]
            base = defaults(group, name)
            for key, value in values.items():
                if key not in ("_name", "data"):
                    checked += 1
                    assert value != base[key] and not (isinstance(base[key], tuple) and list(base[key]) == value), \
                        f"{path.name}: {group}.{key}: {value} is the default"
    assert checked > 10


def _argparse_config(args):
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parser = options.get_training_parser()
    return convert_namespace_to_omegaconf(options.parse_args_and_arch(parser, args))


@pytest.mark.parametrize("config", sorted(p.stem for p in (recipes.CONFIG_DIR / "recipe").glob("*.yaml")))
def test_hydra_and_argparse_give_the_same_configuration(config, tmp_path):
    overrides = ["task.data=" + str(tmp_path), f"checkpoint.save_dir={tmp_path}/ck"]
    if config.endswith("_finetune"):
        overrides.append(f"checkpoint.finetune_from_model={tmp_path}/base/checkpoint_best.pt")
    hydra = recipes.compose(config, overrides)
    flags = recipes.fairseq_train_args(config, overrides)
    assert "--arch" in flags and flags[flags.index("--arch") + 1] == hydra.model._name
    argp = _argparse_config(flags)
    for group in ("model", "task", "criterion", "optimizer", "lr_scheduler", "optimization"):
        assert OmegaConf.to_container(argp[group]) == OmegaConf.to_container(hydra[group]), group
    for key in ("dataset.batch_size", "common.seed", "common.log_format", "common.log_interval",
                "checkpoint.save_dir", "checkpoint.finetune_from_model"):
        assert OmegaConf.select(argp, key) == OmegaConf.select(hydra, key), key


def test_flags_name_the_architecture_not_its_values():
    flags = recipes.fairseq_train_args("enwik8_awd_lstm", ["task.data=x"])
    assert flags[flags.index("--arch") + 1] == "awd_lstm_enwik8" and "--nhid" not in flags
    flags = recipes.fairseq_train_args("enwik8_awd_lstm", ["task.data=x", "++model.nhid=64"])
    assert flags[flags.index("--nhid") + 1] == "64"


def test_stage_commands(tmp_path):
    cmds = recipes.stage_commands(recipes.RECIPES["ptb_qrnn"], "data-bin/ptb", str(tmp_path / "ck"))
    assert list(cmds) == ["train", "finetune", "eval", "pointer"]
    assert "checkpoint.finetune_from_model=" + str(tmp_path / "ck/checkpoint_best.pt") in cmds["finetune"]
    assert str(tmp_path / "ck_finetune/checkpoint_best.pt") in cmds["pointer"]
    assert "--pointer-window=500" in cmds["pointer"] and "--bptt=5000" in cmds["pointer"]
    assert list(recipes.stage_commands(recipes.RECIPES["enwik8_awd_lstm"], "d", "c")) == ["train", "eval"]
    assert Path(cmds["train"][cmds["train"].index("--config-dir") + 1]) == recipes.CONFIG_DIR
    assert cmds["finetune"][cmds["finetune"].index("--config-name") + 1:][:2] == ["awd", "recipe=ptb_qrnn_finetune"]
