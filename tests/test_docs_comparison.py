"""The comparison figures the docs state are the ones the runs wrote: each docs/comparison/*/table.md
is report.markdown_table of the results.json beside it, and every model row of a table in the
README or docs/comparison.md is a row of one of those tables."""
import json
from pathlib import Path

import pytest

from awd_fairseq.tools.compare import report

from helpers import REPO

RUNS = sorted((REPO / "docs" / "comparison").glob("*/results.json"))


def _model_rows(text: str):
    return [line for line in text.splitlines() if line.startswith("| `")]


def test_there_are_runs():
    assert {p.parent.name for p in RUNS} >= {"ptb", "ptb_mogrifier"}


@pytest.mark.parametrize("results", RUNS, ids=[p.parent.name for p in RUNS])
def test_table_is_the_results_rendered(results: Path):
    rows = json.loads(results.read_text())["rows"]
    table = (results.parent / "table.md").read_text()
    assert _model_rows(report.markdown_table(rows)) == _model_rows(table)


@pytest.mark.parametrize("doc", ["README.md", "docs/comparison.md"])
def test_the_docs_rows_are_measured_rows(doc):
    measured = {row for p in RUNS for row in _model_rows((p.parent / "table.md").read_text())}
    # the comparison table's rows: 15 columns (other tables there have fewer)
    stated = [row for row in _model_rows((REPO / doc).read_text()) if row.count("|") == 16]
    assert stated, f"{doc} states no comparison row"
    assert [row for row in stated if row not in measured] == []
