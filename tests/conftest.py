"""Shared fixtures: tiny binarized corpora built once per session, and fairseq CLI runners."""
import lzma
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = next((p for p in (REPO / "shared" / "data", REPO.parent / "shared" / "data") if p.is_dir()), None)
USER_DIR = str(REPO / "awd_fairseq")


def pytest_collection_modifyitems(config, items):
    """Mark as `e2e` every test in a test_e2e_*.py / test_*_e2e.py file and every test that uses,
    directly or through its fixtures, the `fairseq_cli` runner fixture, so `pytest -m "not e2e"`
    runs the unit tests alone."""
    for item in items:
        name = item.path.name
        if name.startswith("test_e2e_") or name.endswith("_e2e.py") or "fairseq_cli" in item.fixturenames:
            item.add_marker(pytest.mark.e2e)


def _head(path: Path, n: int, skip: int = 0) -> str:
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return "".join(f.readlines()[skip : skip + n])


def make_data_bin(tmp: Path, splits: dict) -> Path:
    from awd_fairseq.data.prepare import binarize

    raw = tmp / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, text in splits.items():
        (raw / f"{split}.txt").write_text(text, encoding="utf-8")
    binarize(raw, tmp / "bin", workers=1)
    return tmp / "bin"


@pytest.fixture(scope="session")
def tiny_bin(tmp_path_factory) -> Path:
    """A slice of the embedded WikiText-2 (ships with the repo): ~25k training tokens."""
    src = REPO / "data" / "wikitext-2"
    return make_data_bin(
        tmp_path_factory.mktemp("tiny"),
        {
            "train": _head(src / "train.txt.xz", 500),
            "valid": _head(src / "valid.txt.xz", 60),
            "test": _head(src / "test.txt.xz", 60),
        },
    )


@pytest.fixture(scope="session")
def ptb_slice_bin(tmp_path_factory) -> Path:
    if SHARED_DATA is None:
        pytest.skip("../shared/data not present")
    src = SHARED_DATA / "ptb"
    return make_data_bin(
        tmp_path_factory.mktemp("ptb"),
        {"train": _head(src / "train.txt", 1500), "valid": _head(src / "valid.txt", 150), "test": _head(src / "test.txt", 150)},
    )


TINY_MODEL = ["--emsize", "32", "--nhid", "64", "--nlayers", "2"]


def run_fairseq(tool: str, args, check: bool = True) -> subprocess.CompletedProcess:
    """Run fairseq_cli.<tool> in a subprocess with our --user-dir; returns the completed process."""
    cmd = [sys.executable, "-m", f"fairseq_cli.{tool}", *map(str, args), "--user-dir", USER_DIR, "--cpu"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}\nexit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def fairseq_cli():
    """`run_fairseq`, as a fixture: a test (or fixture) requesting it is marked `e2e`."""
    return run_fairseq


def train_args(data_bin, save_dir, *extra):
    return [
        data_bin, "--task", "awd_language_modeling", "--arch", "awd_lstm", *TINY_MODEL,
        "--criterion", "awd_split_cross_entropy", "--optimizer", "nt_asgd", "--lr", "30", "--clip-norm", "0.25",
        "--batch-size", "10", "--bptt", "20", "--seed", "1", "--save-dir", save_dir,
        "--log-format", "simple", "--log-interval", "10", "--no-progress-bar", *extra,
    ]


def valid_losses(out: str):
    """Base-2 validation losses as fairseq-train logs them, one per validation."""
    return [float(m) for m in re.findall(r"valid on 'valid' subset \| loss ([0-9.]+)", out)]


def eval_lm_loss(stdout: str) -> float:
    return float(re.search(r"Loss \(base 2\): ([0-9.]+)", stdout).group(1))
