"""scripts/dyneval_search.py, dyneval_table.py and bench/bench_dyneval.py end to end on a tiny trained
awd_lstm: the figures each prints against fairseq-eval-lm run directly with the flags it reports."""
import json
import math
import multiprocessing
import os
import re
import subprocess
import sys

import pytest

from helpers import REPO, USER_DIR, make_short_splits_bin, run_fairseq, train_args

SCRIPTS = REPO / "scripts"


@pytest.fixture(scope="module")
def short_bin(tmp_path_factory):
    return make_short_splits_bin(tmp_path_factory.mktemp("dyneval_scripts"))


@pytest.fixture(scope="module")
def ckpt(short_bin, tmp_path_factory):
    save = tmp_path_factory.mktemp("awd")
    run_fairseq("train", train_args(short_bin, save, "--max-update", "30", "--disable-validation"))
    return save / "checkpoint_last.pt"


def script(name, *args):
    cmd = [sys.executable, str(SCRIPTS / name), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="2"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)}\nexit {proc.returncode}\n{out[-4000:]}"
    return out


def perplexity(data, ckpt, split, *flags):
    """fairseq-eval-lm's own perplexity line (two decimals)."""
    proc = run_fairseq("eval_lm", [data, "--path", ckpt, "--gen-subset", split, "--no-progress-bar", *flags])
    return float(re.search(r"Perplexity: ([0-9.]+)", proc.stdout + proc.stderr).group(1))


def dyneval_flags(eta, lambdah, epsilon):
    return ["--task", "awd_dynamic_eval", "--dyneval-bptt", "5", "--dyneval-lr", eta, "--dyneval-lambda", lambdah,
            "--dyneval-epsilon", epsilon]


PLAIN = ["--task", "awd_language_modeling", "--test-batch-size", "1", "--bptt", "5"]


def test_search_reports_what_fairseq_eval_lm_gives(short_bin, ckpt):
    out = script("dyneval_search.py", short_bin, "--path", ckpt, "--user-dir", USER_DIR, "--task", "awd_dynamic_eval",
                 "--dyneval-bptt", "5", "--cpu", "--etas", "3e-5,1e30", "--lambdas", "2e-3", "--epsilons", "2e-5,1e-4",
                 "--search-segments", "20")
    grid = {(float(e), float(eps)): float(p) for e, eps, p in
            re.findall(r"eta (\S+)\s+lambda \S+\s+epsilon (\S+)\s+valid ppl (\S+)", out)}
    assert len(grid) == 4
    assert math.isinf(grid[1e30, 2e-5]) and math.isinf(grid[1e30, 1e-4])  # diverged, skipped, the search went on
    assert grid[3e-5, 2e-5] != grid[3e-5, 1e-4]  # epsilon reaches the update
    best = re.search(r"best on valid: --dyneval-bptt 5 --dyneval-lr (\S+) --dyneval-lambda (\S+) --dyneval-epsilon (\S+) \| "
                     r"valid ppl (\S+) \((\S+) without\) \| test ppl (\S+) \((\S+) without\)", out)
    eta, lambdah, epsilon = best.group(1, 2, 3)
    assert float(eta) == 3e-5 and float(lambdah) == 2e-3
    assert grid[3e-5, float(epsilon)] == min(grid.values())
    valid, plain_valid, test, plain_test = map(float, best.group(4, 5, 6, 7))
    assert valid == perplexity(short_bin, ckpt, "valid", *dyneval_flags(eta, lambdah, epsilon))
    assert test == perplexity(short_bin, ckpt, "test", *dyneval_flags(eta, lambdah, epsilon))
    assert plain_valid == perplexity(short_bin, ckpt, "valid", *PLAIN)
    assert plain_test == perplexity(short_bin, ckpt, "test", *PLAIN)
    assert test < plain_test


def test_search_leaves_no_process_behind(short_bin, ckpt):
    """Runs cut short (--search-segments, a diverged pair) must not leave a loader worker alive."""
    from awd_fairseq.tools import dyneval_tuning

    task, model = dyneval_tuning.load([short_bin, "--path", ckpt, "--user-dir", USER_DIR, "--task", "awd_dynamic_eval",
                                       "--dyneval-bptt", "5", "--cpu"])
    before = set(multiprocessing.active_children())
    for eta in (3e-5, 1e30):
        dyneval_tuning.perplexity(task, model, "valid", eta, 2e-3, segments=5)
    assert set(multiprocessing.active_children()) == before


def test_table_rows_are_fairseq_eval_lm_runs(short_bin, ckpt, tmp_path):
    out_dir = tmp_path / "table"
    args = [short_bin, "--path", ckpt, "--out", out_dir, "--cpu", "--bptt", "20", "--search-segments", "20",
            "--etas", "3e-5", "--lambdas", "2e-3", "--epsilons", "1e-4"]
    script("dyneval_table.py", *args)
    result = json.loads((out_dir / "results.json").read_text())
    rows, settings = result["rows"], result["settings"]
    assert list(rows) == ["plain", "pointer", "dynamic evaluation", "both"] and not result["problems"]
    tokens = {s: {r[s]["tokens"] for r in rows.values()} for s in ("valid", "test")}
    assert all(len(t) == 1 for t in tokens.values())
    d, p = settings["dyneval"], settings["pointer"]
    assert (d["eta"], d["lambda"], d["epsilon"]) == (3e-5, 2e-3, 1e-4)
    dyneval = dyneval_flags(d["eta"], d["lambda"], d["epsilon"])
    pointer = ["--pointer-window", p["window"], "--pointer-theta", p["theta"], "--pointer-lambda", p["lambda"]]
    assert rows["plain"]["valid"]["ppl"] == perplexity(short_bin, ckpt, "valid", *PLAIN[:-1], "20")
    assert rows["dynamic evaluation"]["test"]["ppl"] == perplexity(short_bin, ckpt, "test", *dyneval)
    assert rows["both"]["valid"]["ppl"] == perplexity(short_bin, ckpt, "valid", *dyneval, "--dyneval-pointer", *pointer)
    table = (out_dir / "table.md").read_text()
    assert f"| dynamic evaluation | {rows['dynamic evaluation']['valid']['ppl']:.2f} |" in table
    again = script("dyneval_table.py", *args)
    assert again.count("reusing the finished run") == 10  # every step
    assert (out_dir / "table.md").read_text() == table


def test_bench_fused_update_agrees_with_the_reference_loop(short_bin, ckpt):
    out = script("bench/bench_dyneval.py", short_bin, "--user-dir", USER_DIR, "--cpu", "--path", ckpt, "--gen-subset", "test",
                 "--dyneval-bptt", "5", "--bench-segments", "20", "--rounds", "1")
    fused, loop = map(float, re.search(r"perplexity fused (\S+) loop (\S+)", out).groups())
    assert abs(fused - loop) <= 1e-4 * loop
    assert re.search(r"update time\s+fused \S+s loop \S+s -> [0-9.]+x", out)
