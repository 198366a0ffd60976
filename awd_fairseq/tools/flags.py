"""A resolved fairseq configuration written back as `fairseq-train` flags.

fairseq builds its argparse options from the same dataclasses that hydra fills
(`gen_parser_from_dataclass`: `--` + the field name with `-` for `_`, booleans as switches that
flip the default), so a configuration maps to flags field by field: every value that differs from
its dataclass default becomes one flag, `_name` becomes `--task / --arch / --criterion /
--optimizer / --lr-scheduler`, and `task.data` is the positional argument. Fields whose default is
an interpolation (`II("optimization.lr")`) are owned by another group and skipped. For the model,
the default is the named architecture's (the model's dataclass with `ARCH_OVERRIDES`), so
`--arch awd_lstm_wt2` carries the architecture's values as it does on the command line.
"""
import dataclasses
from typing import Any, Dict, List

from omegaconf import DictConfig, OmegaConf

# FairseqConfig groups written as flags (the others are fairseq-eval-lm's or generation's)
PLAIN_GROUPS = ("common", "distributed_training", "dataset", "optimization", "checkpoint")
NAMED_GROUPS = {"task": "--task", "model": "--arch", "criterion": "--criterion", "optimizer": "--optimizer",
                "lr_scheduler": "--lr-scheduler"}
# set by fairseq-hydra-train itself, or machine-specific: not part of a recipe
SKIP = {("distributed_training", "distributed_world_size"), ("distributed_training", "device_id")}


def _defaults(dc_instance) -> Dict[str, Any]:
    return {f.name: getattr(dc_instance, f.name) for f in dataclasses.fields(dc_instance)}


def group_defaults(group: str, name: str = None) -> Dict[str, Any]:
    """The dataclass defaults fairseq's argparse would start from for `group` (and its `_name`)."""
    from fairseq.dataclass.configs import FairseqConfig
    from fairseq.models import ARCH_MODEL_NAME_REGISTRY, MODEL_DATACLASS_REGISTRY
    from fairseq.registry import REGISTRIES
    from fairseq.tasks import TASK_DATACLASS_REGISTRY

    from awd_fairseq.models.architectures import ARCH_OVERRIDES

    if group in PLAIN_GROUPS:
        f = FairseqConfig.__dataclass_fields__[group]
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        return _defaults(default() if isinstance(default, type) else default)
    if group == "task":
        return _defaults(TASK_DATACLASS_REGISTRY[name]())
    if group == "model":
        values = _defaults(MODEL_DATACLASS_REGISTRY[ARCH_MODEL_NAME_REGISTRY.get(name, name)]())
        values.update(ARCH_OVERRIDES.get(name, {}))
        return values
    return _defaults(REGISTRIES[group]["dataclass_registry"][name]())


def _is_interpolation(value) -> bool:
    return isinstance(value, str) and value.startswith("${")


def _format(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_format(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def group_flags(group: str, values: Dict[str, Any]) -> List[str]:
    name = values.get("_name")
    defaults = group_defaults(group, name)
    flags = [NAMED_GROUPS[group], name] if group in NAMED_GROUPS else []
    for key, value in values.items():
        if key == "_name" or (group, key) in SKIP or (group == "task" and key == "data"):
            continue
        if key not in defaults:
            raise KeyError(f"{group}.{key} is not an option of {name or group}")
        default = defaults[key]
        if isinstance(default, tuple):  # e.g. adam_betas: hydra gives the tuple back as a list
            default = list(default)
        if _is_interpolation(default) or value == default:
            continue
        if isinstance(default, list) and isinstance(value, list) and list(map(float, value)) == list(map(float, default)):
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(default, bool) or isinstance(value, bool):
            flags.append(flag)  # fairseq: store_true for a False default, store_false for a True one
        elif value is None:
            raise ValueError(f"{group}.{key}: None differs from the default {default!r} and has no flag")
        else:
            flags += [flag, _format(value)]
    return flags


def train_flags(cfg: DictConfig) -> List[str]:
    """`fairseq-train` arguments equivalent to the resolved `cfg` (data directory first)."""
    values = OmegaConf.to_container(cfg, resolve=True)
    flags = [str(values["task"]["data"])]
    for group in (*NAMED_GROUPS, *PLAIN_GROUPS):
        if values.get(group) is not None:
            flags += group_flags(group, values[group])
    return flags
