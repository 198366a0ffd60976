"""A fastai AWD-LSTM language model (its `.pth` and `itos` `.pkl`) as a fairseq checkpoint directory:

    DIR/model.pt   a checkpoint of this plugin's `awd_lstm`, as fairseq-train writes one (`cfg` with
                   its model and task sections, `model`, `optimizer_history`, ...), holding tensors and
                   plain containers only: `torch.load(..., weights_only=True)` reads it
    DIR/dict.txt   the vocabulary in the model's row order, for `fairseq-preprocess --srcdict`

fairseq-eval-lm, the hub's `from_pretrained(DIR)` and `fairseq-train --finetune-from-model`
read it like any checkpoint of the plugin. The vocabulary is fastai's (fastai_vocab.py), or another
dict.txt re-aligned to it as fastai's `match_embeds` does. The model is built by the plugin itself
from the configuration written into the checkpoint and filled by fastai_lm.py, so the saved state
dict has exactly the keys the plugin loads.
"""
import logging
import os
import shutil
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional

import torch
from fairseq.data import Dictionary

from .fastai_lm import FASTAI_LM_DROPOUTS, FastaiLM, fill_awd_lstm, read_state_dict
from .fastai_vocab import NEW_WORD, dictionary_words, load_itos, rows_for_dictionary, write_dict

logger = logging.getLogger(__name__)

CHECKPOINT = "model.pt"  # the name fairseq's hub `from_pretrained` opens by default


@dataclass
class ImportResult:
    checkpoint: str
    dictionary: str
    vocab_size: int
    new_words: int  # rows without a fastai counterpart (mean embedding and bias)
    flags: Dict[str, str]  # the awd_lstm model flags, as fairseq-train takes them


def load_fastai_state(path: str, allow_pickle: bool = False) -> Mapping:
    """The `.pth` file's contents, read with torch's weights-only loading unless `allow_pickle`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as e:  # torch's UnpicklingError names the global it refused
        if allow_pickle:
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path} does not load with weights_only=True ({first}): pass --allow-pickle "
                         "if you trust the file") from None


def model_flags(lm: FastaiLM, drop_mult: float) -> Dict[str, str]:
    """awd_lstm's flags for `lm`: its sizes, fastai's language-model dropouts times `drop_mult`, a
    full softmax (fastai has no split softmax) and tying (the default)."""
    if not 0.0 <= drop_mult * max(FASTAI_LM_DROPOUTS.values()) < 1.0:
        raise ValueError(f"--drop-mult {drop_mult} makes a dropout reach 1 or go negative: pass a value in "
                         f"[0, {1 / max(FASTAI_LM_DROPOUTS.values()):g})")
    flags = {name: str(value) for name, value in lm.awd_lstm_flags().items()}
    flags.update((name, repr(round(p * drop_mult, 6))) for name, p in FASTAI_LM_DROPOUTS.items())
    flags["split_softmax_cutoffs"] = "none"
    return flags


def training_cfg(data_dir: str, flags: Dict[str, str]) -> dict:
    """The configuration fairseq-train would save for `awd_lstm` with `flags` on `data_dir`, built by
    fairseq's own parser, as a plain dict (what `Trainer.state_dict` stores)."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from omegaconf import OmegaConf

    import awd_fairseq  # noqa: F401  (registers the task, model, criterion and optimizer)

    argv = [data_dir, "--task", "awd_language_modeling", "--arch", "awd_lstm",
            "--criterion", "awd_split_cross_entropy", "--optimizer", "nt_asgd", "--lr", "30", "--clip-norm", "0.25"]
    for name, value in flags.items():
        argv += ["--" + name.replace("_", "-"), value]
    args = options.parse_args_and_arch(options.get_training_parser(), input_args=argv)
    cfg = OmegaConf.to_container(convert_namespace_to_omegaconf(args), resolve=True, enum_to_str=True)
    _check_plain(cfg, "cfg")
    return cfg


def _check_plain(value, where: str) -> None:
    """Refuse anything weights-only loading would not read back (fairseq keeps the Namespace of a
    component registered without a dataclass)."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_plain(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
    elif not (value is None or isinstance(value, (str, int, float, bool))):
        raise TypeError(f"{where} is a {type(value).__name__}: the checkpoint would not load with weights_only")


def build_model(cfg: dict, data_dir: str):
    """This plugin's task and `awd_lstm` from the saved configuration, as fairseq's loaders build them."""
    from fairseq import tasks
    from omegaconf import OmegaConf

    conf = OmegaConf.create(cfg)
    task = tasks.setup_task(conf.task)
    return task.build_model(conf.model).eval()


def import_fastai_lm(model_path: str, itos_path: str, out_dir: str, vocab: Optional[str] = None,
                     drop_mult: float = 1.0, allow_pickle: bool = False) -> ImportResult:
    """Write `out_dir`/model.pt and `out_dir`/dict.txt (see the module docstring). `vocab`: a
    dict.txt (fairseq-preprocess's) to re-align the rows to instead of fastai's vocabulary."""
    lm = read_state_dict(load_fastai_state(model_path, allow_pickle))
    itos = load_itos(itos_path)
    if len(itos) != lm.embedding.size(0):
        raise ValueError(f"{itos_path} has {len(itos)} tokens but 0.encoder.weight {lm.embedding.size(0)} rows: "
                         "pass the itos .pkl saved with this model")
    os.makedirs(out_dir, exist_ok=True)
    dict_path = os.path.join(out_dir, "dict.txt")
    if vocab is None:
        write_dict(dictionary_words(itos), dict_path)
    elif os.path.abspath(vocab) != os.path.abspath(dict_path):
        shutil.copyfile(vocab, dict_path)
    rows = rows_for_dictionary(Dictionary.load(dict_path), itos)
    new_words = int((rows == NEW_WORD).sum())
    if vocab is not None:
        logger.info("re-aligned to %s: %d of %d rows are new words (mean embedding and bias)", vocab, new_words,
                    rows.numel())

    flags = model_flags(lm, drop_mult)
    cfg = training_cfg(out_dir, flags)
    model = build_model(cfg, out_dir)
    fill_awd_lstm(model, lm, rows)
    cfg["task"]["data"] = "."  # the hub reads it relative to the checkpoint's directory
    state = checkpoint_state(cfg, model.state_dict(), {
        "fastai_model": os.path.basename(model_path), "fastai_itos": os.path.basename(itos_path),
        "fastai_layout": lm.layout, "new_words": new_words,
    })
    path = os.path.join(out_dir, CHECKPOINT)
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)
    logger.info("wrote %s (%s layout, %d layers, sizes %s, vocabulary %d)", path, lm.layout, len(lm.layers),
                lm.sizes, rows.numel())
    return ImportResult(path, dict_path, rows.numel(), new_words, flags)


def checkpoint_state(cfg: dict, model_state: Mapping, source: dict) -> dict:
    """The checkpoint dict in fairseq `Trainer.state_dict`'s layout, before any training update."""
    from fairseq.criterions import CRITERION_REGISTRY
    from fairseq.optim import OPTIMIZER_REGISTRY

    history: List[dict] = [{
        "criterion_name": CRITERION_REGISTRY[cfg["criterion"]["_name"]].__name__,
        "optimizer_name": OPTIMIZER_REGISTRY[cfg["optimizer"]["_name"]].__name__,
        "lr_scheduler_state": {"best": None},
        "num_updates": 0,
    }]
    return {"args": None, "cfg": cfg, "model": dict(model_state), "criterion": None, "optimizer_history": history,
            "task_state": {}, "extra_state": {"fastai_import": source}}
