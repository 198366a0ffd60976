"""What every script shares: where the plugin and its configs are, the fairseq command of this
Python's environment, and one logging setup."""
import logging
import shutil
import sys
from pathlib import Path

USER_DIR = Path(__file__).resolve().parents[1]  # the package fairseq loads with --user-dir
CONFIG_DIR = USER_DIR / "config"  # the fairseq-hydra-train recipes
LOG_FORMAT = "%(asctime)s | %(levelname)s | %(name)s | %(message)s"  # fairseq's own format


def setup_logging(level: int = logging.INFO) -> None:
    """fairseq's log format on stderr, replacing any earlier setup (fairseq's imports make one)."""
    logging.basicConfig(level=level, format=LOG_FORMAT, force=True)


def fairseq_tool(name: str) -> str:
    """The fairseq entry point (`fairseq-train`, ...) beside this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)
