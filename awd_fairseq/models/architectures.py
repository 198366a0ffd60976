"""Named architectures (`--arch awd_lstm_wt2`, ...): a model's dataclass defaults with the values of
one recipe. Those values have one home, `awd_fairseq/config/model/<arch>.yaml`, read here for the
argparse route (fairseq-train --arch) and selected as `model=<arch>` by fairseq-hydra-train's
recipes; each file holds only what differs from its model's defaults.

fairseq applies an architecture function only on the argparse route, where every model flag the
user did not give is missing from the namespace. Under fairseq-hydra-train the architecture comes
from its config group; `model._name=awd_lstm_wt2` alone selects the name but not the values
(fairseq has filled every field by then), which is reported rather than guessed.
"""
import logging
from argparse import Namespace
from pathlib import Path
from typing import Any, Dict

from fairseq.models import register_model_architecture
from omegaconf import OmegaConf

logger = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).resolve().parents[1] / "config" / "model"
ARCH_OVERRIDES: Dict[str, Dict[str, Any]] = {}  # arch name -> the values its YAML sets


def architecture_values(arch_name: str) -> Dict[str, Any]:
    """The fields config/model/<arch_name>.yaml sets, `_name` aside."""
    values = OmegaConf.to_container(OmegaConf.load(MODEL_CONFIG_DIR / f"{arch_name}.yaml"))
    if values.pop("_name", None) != arch_name:
        raise ValueError(f"{MODEL_CONFIG_DIR / arch_name}.yaml must start with _name: {arch_name}")
    return values


def named_architecture(model_name: str, arch_name: str, base: type):
    """Register `--arch arch_name` for `model_name`: the dataclass `base`'s defaults with the values
    of config/model/<arch_name>.yaml."""
    overrides = architecture_values(arch_name)
    unknown = set(overrides) - set(base.__dataclass_fields__)
    if unknown:
        raise ValueError(f"config/model/{arch_name}.yaml sets {sorted(unknown)}, not options of {model_name}")
    ARCH_OVERRIDES[arch_name] = overrides
    defaults = {name: f.default for name, f in base.__dataclass_fields__.items()}

    def apply(args):
        if isinstance(args, Namespace):
            for name, value in overrides.items():
                if not hasattr(args, name):  # model flags are parsed with argparse.SUPPRESS
                    setattr(args, name, value)
            return
        missing = [k for k in overrides if k not in args]
        for name in missing:  # a partial config (hydra before the plugin's dataclass was merged)
            args[name] = overrides[name]
        if not missing and all(args[k] == defaults[k] != v for k, v in overrides.items()):
            logger.warning(
                "model._name=%s has %s's defaults, not the architecture's values %s: select the config "
                "group instead (fairseq-hydra-train ... model=%s)", arch_name, model_name, overrides, arch_name)

    apply.__name__ = arch_name
    register_model_architecture(model_name, arch_name)(apply)
    return apply
