"""What every script shares: where the plugin and its configs are, the fairseq command of this
Python's environment, and one logging setup."""
import logging
import shutil
import sys
from pathlib import Path
from typing import List

USER_DIR = Path(__file__).resolve().parents[1]  # the package fairseq loads with --user-dir
CONFIG_DIR = USER_DIR / "config"  # the fairseq-hydra-train recipes
LOG_FORMAT = "%(asctime)s | %(levelname)s | %(name)s | %(message)s"  # fairseq's own format


def setup_logging(level: int = logging.INFO) -> None:
    """fairseq's log format on stderr, replacing any earlier setup (fairseq's imports make one)."""
    logging.basicConfig(level=level, format=LOG_FORMAT, force=True)


# the fairseq_cli module behind each entry point, for an environment without them (fairseq on
# PYTHONPATH, as on a GPU machine without an installed fairseq: docs/gpu.md)
FAIRSEQ_MODULES = {"fairseq-train": "fairseq_cli.train", "fairseq-eval-lm": "fairseq_cli.eval_lm",
                   "fairseq-hydra-train": "fairseq_cli.hydra_train"}


def fairseq_command(name: str) -> List[str]:
    """The command that runs fairseq's `name` (`fairseq-train`, ...): the entry point beside this
    Python, else the one on PATH, else this Python running its fairseq_cli module."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return [str(beside)]
    on_path = shutil.which(name)
    return [on_path] if on_path else [sys.executable, "-m", FAIRSEQ_MODULES[name]]
