"""Lets fairseq load checkpoints that hold an `argparse.Namespace`, with torch's safe loading on.

Since torch 2.6 `torch.load` defaults to `weights_only=True`, and fairseq's loaders (fairseq-train's
`--restore-file` / `--finetune-from-model`, fairseq-eval-lm, fairseq-interactive, the hub's
`from_pretrained`) take that default. Two kinds of checkpoint then fail with "Unsupported global:
GLOBAL argparse.Namespace": those written with a component registered without a dataclass (fairseq's
`--optimizer sgd`, the original's default optimizer: its config is the parsed Namespace) and
fairseq's pre-hydra ones (fairseq < 0.10, all options in `args`). A Namespace is a plain attribute
bag, so allowlisting exactly that class keeps `weights_only`'s safety; turning it off would let a
checkpoint run code when loaded.

awd_fairseq/__init__.py calls `allow_namespace_in_checkpoints()`: every fairseq tool imports the
package before it reads a checkpoint. It changes torch's allowlist for the whole process and logs
that once; on a torch without `add_safe_globals` (before 2.4, which loads everything) it does nothing.
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
