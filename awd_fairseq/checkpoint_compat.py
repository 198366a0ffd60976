"""Lets fairseq load checkpoints that hold an `argparse.Namespace`, with torch's safe loading on.

Since torch 2.6 `torch.load` defaults to `weights_only=True`, which unpickles only tensors,
containers, primitives and an allowlist of classes. fairseq's own loaders
(`checkpoint_utils.load_checkpoint_to_cpu`, used by fairseq-train's `--restore-file` and
`--finetune-from-model`, fairseq-eval-lm, fairseq-interactive, fairseq-generate and the hub
interface's `from_pretrained`) call `torch.load(f, map_location=...)` without the argument, so they
get that default. Two kinds of fairseq checkpoint store an `argparse.Namespace` and so fail with
"Unsupported global: GLOBAL argparse.Namespace":

* those written with a component registered without a dataclass, whose config fairseq keeps as
  the Namespace it parsed: fairseq's `--optimizer sgd` (the original awd-lstm-lm's default
  optimizer) is one; the Namespace sits in `cfg["optimizer"]`;
* fairseq's pre-hydra checkpoints (fairseq < 0.10), which store all their options in `args`.

A Namespace is a plain attribute bag (its unpickling sets attributes and runs no code of its own),
so allowlisting exactly that class keeps the safety of `weights_only` loading while these load.
Turning `weights_only` off instead would let a checkpoint run arbitrary code when loaded.

awd_fairseq/__init__.py calls `allow_namespace_in_checkpoints()`: every fairseq tool imports the
package (`--user-dir awd_fairseq`) before it reads a checkpoint, and it is the only hook before
fairseq's own `torch.load`. It changes torch's allowlist for the whole process, and says so in the
log once. On a torch without `torch.serialization.add_safe_globals` (before 2.4; those versions
default to `weights_only=False`, so nothing is refused) it does nothing.
"""
import argparse
import logging

import torch

logger = logging.getLogger(__name__)

ALLOWED = (argparse.Namespace,)


def allow_namespace_in_checkpoints() -> bool:
    """Add `argparse.Namespace` to torch's weights_only allowlist; False where torch has none."""
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is None:
        return False
    if not set(ALLOWED) <= set(torch.serialization.get_safe_globals()):
        add_safe_globals(list(ALLOWED))
        logger.info("torch.load(weights_only=True) may now unpickle %s (fairseq checkpoints that hold one): "
                    "awd_fairseq.checkpoint_compat", ", ".join(f"{c.__module__}.{c.__qualname__}" for c in ALLOWED))
    return True
