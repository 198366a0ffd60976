"""Fixtures: tiny binarized corpora built once per session and the fairseq CLI runner; the e2e
marking. Everything else the tests share is in helpers.py."""
from pathlib import Path

import pytest

from helpers import REPO, head_lines, make_data_bin, ptb_lines, run_fairseq

E2E_PREFIX = "test_e2e_"


def pytest_collection_modifyitems(config, items):
    """Every test in a test_e2e_*.py file is marked `e2e` (end to end through the fairseq tools, or
    slow), so `pytest -m "not e2e"` runs the unit tests alone; the file name is the one mechanism.
    A test elsewhere that asks for the `fairseq_cli` runner is a collection error."""
    misplaced = []
    for item in items:
        if item.path.name.startswith(E2E_PREFIX):
            item.add_marker(pytest.mark.e2e)
        elif "fairseq_cli" in item.fixturenames:
            misplaced.append(item.nodeid)
    if misplaced:
        raise pytest.UsageError(f"tests running the fairseq tools outside a {E2E_PREFIX}*.py file: "
                                f"{', '.join(misplaced)}; move them to one")
    # the end-to-end files first: with `pytest -n` (make test) the quick unit tests then fill the
    # workers' last minutes instead of one long e2e file running alone at the end
    items.sort(key=lambda item: not item.path.name.startswith(E2E_PREFIX))


@pytest.fixture(scope="session")
def tiny_bin(tmp_path_factory) -> Path:
    """A slice of the embedded WikiText-2 (ships with the repo): ~25k training tokens."""
    src = REPO / "data" / "wikitext-2"
    return make_data_bin(
        tmp_path_factory.mktemp("tiny"),
        {
            "train": head_lines(src / "train.txt.xz", 500),
            "valid": head_lines(src / "valid.txt.xz", 60),
            "test": head_lines(src / "test.txt.xz", 60),
        },
    )


@pytest.fixture(scope="session")
def ptb_slice_bin(tmp_path_factory) -> Path:
    """1500 / 150 / 150 lines of PTB, or of its WikiText-2 stand-in (see `ptb_lines`)."""
    return make_data_bin(
        tmp_path_factory.mktemp("ptb"),
        {"train": ptb_lines("train", 1500), "valid": ptb_lines("valid", 150), "test": ptb_lines("test", 150)},
    )


@pytest.fixture(scope="session")
def fairseq_cli():
    """`run_fairseq`, as a fixture: a test (or fixture) requesting it is marked `e2e`."""
    return run_fairseq
