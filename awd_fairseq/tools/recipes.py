"""The original README's experiments (salesforce/awd-lstm-lm, "Experiments") and the commands of
each stage: train (main.py), fine-tune (finetune.py), fairseq-eval-lm on the test split, and the
cache pointer (pointer.py). Training and fine-tuning are the YAML recipes in awd_fairseq/config
(`--config-name awd recipe=<name>`); the scoring stages are fairseq-eval-lm flags, kept here
(fairseq-eval-lm reads no hydra config).

    from awd_fairseq.tools import recipes
    cfg = recipes.compose("ptb_qrnn", ["task.data=data-bin/ptb"])    # as fairseq-hydra-train resolves it
    recipes.stage_commands(recipes.RECIPES["ptb_qrnn"], "data-bin/ptb", "checkpoints/ptb_qrnn")

A new recipe is a `config/recipe/<name>.yaml` (what differs from the defaults), a
`<name>_finetune.yaml` beside it if it has a fine-tuning stage, and one `Recipe` below.
"""
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from omegaconf import DictConfig, OmegaConf

from .cli import CONFIG_DIR, USER_DIR, fairseq_command
from .flags import train_flags

# pointer.py's lines in the original README (--window, --theta, --lambdasm, --bptt)
POINTER_PTB = {"pointer_window": 500, "pointer_theta": 1.0, "pointer_lambda": 0.1, "bptt": 5000}
POINTER_WT2 = {"pointer_window": 3785, "pointer_theta": 0.662, "pointer_lambda": 0.1279, "bptt": 2000}


# dynamic evaluation as the reference ran it (docs/dynamic_evaluation.md): benkrause/dynamic-evaluation
# dynamiceval.py --lr 0.002 --lamb 0.02 --epsilon 0.001 --oldhyper (AWD-LSTM), --QRNN --lr 0.00012
# --lamb 0.02 (PTB) / 0.008 (WikiText-2) --bptt 20 (QRNN); zihangdai/mos dynamiceval.py (MoS)
DYNEVAL_LSTM = {"dyneval_hyper_scale": "oldhyper", "dyneval_lr": 0.002, "dyneval_lambda": 0.02, "dyneval_epsilon": 0.001}
DYNEVAL_QRNN_PTB = {"dyneval_bptt": 20, "dyneval_lr": 0.00012, "dyneval_lambda": 0.02}
DYNEVAL_QRNN_WT2 = {"dyneval_bptt": 20, "dyneval_lr": 0.00012, "dyneval_lambda": 0.008}
DYNEVAL_MOS_PTB = {**DYNEVAL_LSTM, "dyneval_lambda": 0.075}
DYNEVAL_MOS_WT2 = {**DYNEVAL_LSTM, "dyneval_epsilon": 0.002}

Figures = Tuple[Optional[float], Optional[float]]  # (valid, test): perplexity, or bits per character


@dataclass(frozen=True)
class Recipe:
    name: str  # config/recipe/<name>.yaml (and <name>_finetune.yaml when `finetune`)
    data: str  # the corpus, as scripts/prepare_data.py names it (data-bin/<data>)
    finetune: bool = False
    pointer: Optional[Mapping[str, Any]] = None  # awd_cache_pointer task options
    dyneval: Optional[Mapping[str, Any]] = None  # awd_dynamic_eval task options
    # the published figures per stage (train, finetune, pointer, dyneval), docs/recipes.md's table
    published: Mapping[str, Figures] = field(default_factory=dict)

    @property
    def stages(self) -> List[str]:
        return ["train"] + (["finetune"] if self.finetune else []) + ["eval"] + (["pointer"] if self.pointer else [])


RECIPES: Dict[str, Recipe] = {
    r.name: r
    for r in (
        # salesforce/awd-lstm-lm README; dynamic evaluation: Krause et al. 2018, benkrause/dynamic-evaluation README
        Recipe("ptb_awd_lstm", "ptb", finetune=True, pointer=POINTER_PTB, dyneval=DYNEVAL_LSTM,
               published={"train": (61.2, 58.8), "finetune": (58.8, 56.5), "pointer": (53.2, 52.5),
                          "dyneval": (51.6, 51.1)}),
        Recipe("wt2_awd_lstm", "wikitext-2", finetune=True, pointer=POINTER_WT2, dyneval=DYNEVAL_LSTM,
               published={"train": (68.7, 65.6), "finetune": (67.4, 64.7), "pointer": (52.2, 50.6),
                          "dyneval": (46.4, 44.3)}),
        Recipe("ptb_qrnn", "ptb", finetune=True, pointer=POINTER_PTB, dyneval=DYNEVAL_QRNN_PTB,
               published={"train": (60.6, 58.3), "finetune": (59.1, 56.7), "pointer": (53.4, 52.6),
                          "dyneval": (51.4, 50.5)}),
        Recipe("wt2_qrnn", "wikitext-2", finetune=True, pointer=POINTER_WT2, dyneval=DYNEVAL_QRNN_WT2,
               published={"train": (69.3, 66.8), "finetune": (68.5, 65.9), "pointer": (53.6, 52.1),
                          "dyneval": (45.9, 44.0)}),
        # Merity et al. 2018 (arXiv 1803.08240)
        Recipe("wt103_qrnn", "wikitext-103", published={"train": (None, 33.0)}),
        Recipe("pennchar_awd_lstm", "pennchar", published={"train": (None, 1.175)}),
        Recipe("enwik8_awd_lstm", "enwik8", published={"train": (None, 1.232)}),
        # zihangdai/mos, Yang et al. 2018 (tests/test_mixture_of_softmaxes_recipes.py holds its table)
        Recipe("ptb_awd_lstm_mos", "ptb", finetune=True, dyneval=DYNEVAL_MOS_PTB,
               published={"finetune": (56.54, 54.44), "dyneval": (48.33, 47.69)}),
        Recipe("wt2_awd_lstm_mos", "wikitext-2", finetune=True, dyneval=DYNEVAL_MOS_WT2,
               published={"finetune": (63.88, 61.45), "dyneval": (42.41, 40.68)}),
        # deepmind/lamb's Mogrifier LSTM, Melis et al. 2020 (tests/test_mogrifier_recipes.py holds its table)
        Recipe("ptb_mogrifier", "ptb", published={"train": (None, 50.1)}),
        Recipe("wt2_mogrifier", "wikitext-2", published={"train": (None, 55.1)}),
    )
}


ENTRY_POINT = "awd"  # config/awd.yaml: --config-name awd recipe=<name>


def hydra_args(recipe_name: str) -> List[str]:
    """fairseq-hydra-train's arguments that select a recipe."""
    return ["--config-dir", str(CONFIG_DIR), "--config-name", ENTRY_POINT, f"recipe={recipe_name}"]


def compose(recipe_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """The configuration fairseq-hydra-train builds from `hydra_args(recipe_name) overrides...`:
    the YAML composed against fairseq's schema (as `hydra_init` registers it), then completed with
    every registered dataclass's defaults (`add_defaults`)."""
    from fairseq.dataclass.initialize import add_defaults, hydra_init
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from .. import criterions, models, optim, tasks  # noqa: F401  (registries, as --user-dir fills them)

    hydra_init(ENTRY_POINT)
    GlobalHydra.instance().clear()
    with warnings.catch_warnings():  # hydra deprecates the schema matching that fairseq-hydra-train relies on
        warnings.filterwarnings("ignore", message="(?s).*ConfigStore schema", category=UserWarning)
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.1"):  # as fairseq's hydra_main
            cfg = hydra_compose(config_name=ENTRY_POINT, overrides=[f"recipe={recipe_name}", *overrides])
    add_defaults(cfg)
    return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))


def fairseq_train_args(recipe_name: str, overrides: Sequence[str] = ()) -> List[str]:
    """The `fairseq-train` arguments (data directory first) equivalent to the recipe."""
    return train_flags(compose(recipe_name, overrides))


def stage_commands(
    recipe: Recipe, data: str, save_dir: str, overrides: Sequence[str] = (), argparse: bool = False,
    user_dir: str = str(USER_DIR),
) -> Dict[str, List[str]]:
    """Each stage's command line. `overrides` (hydra `key=value`) apply to both training stages;
    `argparse=True` writes the training stages as fairseq-train flags instead of fairseq-hydra-train.
    Fine-tuning writes into `<save_dir>_finetune`; scoring uses the last trained stage's best checkpoint."""
    save_dir = str(save_dir)
    finetuned = save_dir + "_finetune"
    train = [f"task.data={data}", f"common.user_dir={user_dir}", f"checkpoint.save_dir={save_dir}", *overrides]
    stages = {"train": (recipe.name, train)}
    if recipe.finetune:
        finetune = [*train[:2], f"checkpoint.save_dir={finetuned}",
                    f"checkpoint.finetune_from_model={save_dir}/checkpoint_best.pt", *overrides]
        stages["finetune"] = (recipe.name + "_finetune", finetune)
    commands = {}
    for stage, (config_name, config_overrides) in stages.items():
        if argparse:
            commands[stage] = [*fairseq_command("fairseq-train"), *fairseq_train_args(config_name, config_overrides)]
        else:
            commands[stage] = [*fairseq_command("fairseq-hydra-train"), *hydra_args(config_name), *config_overrides]
    best = f"{finetuned if recipe.finetune else save_dir}/checkpoint_best.pt"
    eval_lm = [*fairseq_command("fairseq-eval-lm"), data, "--user-dir", user_dir, "--path", best, "--gen-subset", "test"]
    commands["eval"] = [*eval_lm, "--task", "awd_language_modeling"]
    if recipe.pointer:
        pointer = [f"--{k.replace('_', '-')}={v}" for k, v in recipe.pointer.items()]
        commands["pointer"] = [*eval_lm, "--task", "awd_cache_pointer", *pointer]
    return commands
