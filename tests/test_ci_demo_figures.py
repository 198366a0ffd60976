"""CI's check of the demo's figures (.ci/check_demo_figures.py): the README's block for the logged
number of updates is the reference, each perplexity within the relative tolerance; and the README
holds a parseable block for both runs it documents (CI's 200 updates, the full epoch)."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECK = REPO / ".ci" / "check_demo_figures.py"
sys.path.insert(0, str(CHECK.parent))
import check_demo_figures  # noqa: E402

# what scripts/demo.sh's last four lines look like, with perplexities written out here
DEMO_TAIL = """trained for {n} updates
valid, printed by fairseq-train (10 streams): Loss (base 2): 10.079, Perplexity: {a}
valid, fairseq-eval-lm, 10 streams (same):    Loss (base 2): 10.0786, Perplexity: {b}
test,  fairseq-eval-lm, 1 stream (original): Loss (base 2): 9.9668, Perplexity: {c}
"""


def run_check(tmp_path, log_figures, readme_figures, n_log=200, n_readme=200):
    log = tmp_path / "demo.log"
    log.write_text("== training ...\nnum_updates 200\n" + DEMO_TAIL.format(n=n_log, **log_figures))
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\nIt ends with:\n\n```\n" + DEMO_TAIL.format(n=1536, a=362.01, b=362.01, c=332.2)
                      + "```\n\nand capped:\n\n```\n" + DEMO_TAIL.format(n=n_readme, **readme_figures) + "```\n")
    return subprocess.run([sys.executable, str(CHECK), str(log), "--readme", str(readme)],
                          capture_output=True, text=True)


STATED = dict(a=1081.32, b=1081.33, c=1000.68)


def test_equal_figures_pass(tmp_path):
    assert run_check(tmp_path, STATED, STATED).returncode == 0


@pytest.mark.parametrize("key, factor, ok", [
    ("a", 1.004, True), ("a", 0.996, True),    # inside 0.5%
    ("a", 1.006, False), ("b", 0.994, False),  # outside
    ("c", 1.617, False),                       # another thread count's run
])
def test_tolerance_is_relative_per_figure(tmp_path, key, factor, ok):
    printed = dict(STATED, **{key: round(STATED[key] * factor, 2)})
    result = run_check(tmp_path, printed, STATED)
    assert (result.returncode == 0) == ok, result.stdout + result.stderr
    if not ok:
        assert "differ from the README's for 200 updates" in result.stderr.splitlines()[-1]


def test_the_block_for_the_logged_updates_is_used(tmp_path):
    # the full-epoch block comes first in the README; a 200-update log must be held to the 200 block
    result = run_check(tmp_path, dict(a=362.01, b=362.01, c=332.2), STATED)
    assert result.returncode == 1


def test_a_readme_without_the_block_names_it(tmp_path):
    result = run_check(tmp_path, STATED, STATED, n_readme=300)
    assert result.returncode == 1
    assert "has no line 'trained for 200 updates'" in result.stderr.splitlines()[-1]


@pytest.mark.parametrize("updates", [200, 1536])
def test_the_readme_states_both_runs(updates):
    lines = (REPO / "README.md").read_text().splitlines()
    figures = check_demo_figures.read_figures(lines, updates, "README.md")
    assert set(figures) == {"train_valid", "eval_valid", "test"}
    # the two validation lines score the same checkpoint on the same streams
    assert figures["train_valid"] == pytest.approx(figures["eval_valid"], rel=1e-4)
