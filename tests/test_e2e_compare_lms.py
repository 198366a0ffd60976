"""scripts/compare_lms.py end to end on a tiny corpus with tiny budgets of both kinds: every model
has a row, the plots are PNG images, every run scored the same tokens, the budget was kept, the
dynamic-evaluation columns equal a direct fairseq-eval-lm run with the printed flags, and a rerun
reuses the finished steps."""
import json
import math
import os
import struct
import subprocess
import sys

import pytest

from awd_fairseq.tools import fairseq_logs
from awd_fairseq.tools.compare.specs import MODELS

from helpers import REPO, eval_lm_loss, head_lines, make_data_bin, run_fairseq


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    src = REPO / "data" / "wikitext-2"
    return make_data_bin(tmp_path_factory.mktemp("corpus"), {"train": head_lines(src / "train.txt.xz", 100),
                                                            "valid": head_lines(src / "valid.txt.xz", 12),
                                                            "test": head_lines(src / "test.txt.xz", 12)})


def compare(data, out, *args):
    cmd = [sys.executable, str(REPO / "scripts" / "compare_lms.py"), str(data), "--out", str(out), "--size", "tiny",
           "--cpu", "--pointer-window", "20", "--log-interval", "1", "--no-progress", "--calibration-updates", "6",
           "--dyneval-search-segments", "5", "--dyneval-etas", "3e-5,1e-4", "--dyneval-lambdas", "2e-3", *args]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def speed_of(log):
    """Seconds and tokens per update from a calibration log, written out: wpb / wps of the
    train_inner records after the first."""
    records = fairseq_logs.train_inner(log)[1:]
    assert len(records) >= 4 and all(r["wps"] > 0 for r in records)
    return (sum(r["wpb"] / r["wps"] for r in records) / len(records), sum(r["wpb"] for r in records) / len(records))


# one recurrent model of the plugin (qrnn and awd_lstm_mos take the same path), the transformer and lstm_lm
TOKEN_BUDGET_MODELS = ["awd_lstm", "transformer_lm", "lstm_lm"]


def test_compare_end_to_end_with_a_token_budget(corpus, tmp_path):
    out = tmp_path / "out"
    models = ["--models", ",".join(TOKEN_BUDGET_MODELS)]
    compare(corpus, out, "--budget-tokens", "600", "--tensorboard", *models)
    table = (out / "table.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == [m for m in MODELS if m in TOKEN_BUDGET_MODELS]
    results = json.loads((out / "results.json").read_text())
    assert results["problems"] == [] and "identical for every run" in table
    assert "Budget: equal training tokens: 600 target tokens per model" in table
    for row in results["rows"]:
        _, tokens_per_update = speed_of(out / row["model"] / "calibration.log")
        assert row["updates"] == max(1, round(600 / tokens_per_update)), row["model"]
        per_update = fairseq_logs.train_inner(out / row["model"] / "train.log")  # --log-interval 1
        # the per-epoch mean wpb is rounded to 0.1
        assert row["tokens"] == pytest.approx(sum(r["wpb"] for r in per_update), abs=0.05 * row["updates"])
        assert len(per_update) == row["updates"]
        assert row["params"] > 0 and row["peak_rss_mib"] > 50 and row["epochs"] > 0
        assert all(math.isfinite(row["eval"][s]["loss"]) for s in ("valid", "test"))
        assert (row["pointer"] is None) == (row["dyneval"] is None) == (row["model"] == "lstm_lm")
    for name in ("valid_vs_time.png", "valid_vs_tokens.png"):
        width, height = _png_size(out / name)
        assert width > 100 and height > 100
    events = list((out / "awd_lstm" / "tensorboard").rglob("events.out.tfevents.*"))
    assert {e.parent.name for e in events} >= {"train_inner", "valid"}

    # the dynamic-evaluation column is fairseq-eval-lm run directly with the settings the notes print
    row = next(r for r in results["rows"] if r["model"] == "transformer_lm")
    d = row["dyneval"]
    assert f"dynamic evaluation segments of 8, eta {d['eta']:g}, lambda {d['lambda']:g}, epsilon 0.0001" in table
    direct = run_fairseq("eval_lm", [corpus, "--path", out / "transformer_lm" / "checkpoints" / "checkpoint_best.pt",
                                     "--task", "awd_dynamic_eval", "--dyneval-bptt", "8", "--stream-context", "24",
                                     "--dyneval-lr", f"{d['eta']:g}", "--dyneval-lambda", f"{d['lambda']:g}",
                                     "--dyneval-epsilon", f"{d['epsilon']:g}", "--gen-subset", "test"])
    assert eval_lm_loss(direct.stdout + direct.stderr) == pytest.approx(d["test"]["loss"], abs=1e-4)
    assert d["test"]["loss"] != row["eval"]["test"]["loss"]

    stamp = (out / "awd_lstm" / "train.log").stat().st_mtime
    again = compare(corpus, out, "--budget-tokens", "600", "--tensorboard", *models)
    # calibration, train, plain valid + test, pointer tuning + valid + test, dyneval tuning + valid + test; lstm_lm 4
    assert again.stderr.count("reusing the finished run") == (len(TOKEN_BUDGET_MODELS) - 1) * 10 + 4
    assert (out / "awd_lstm" / "train.log").stat().st_mtime == stamp


def test_compare_with_a_time_budget(corpus, tmp_path):
    out = tmp_path / "out"
    compare(corpus, out, "--budget-minutes", "0.05", "--models", "mogrifier_lstm,transformer_lm", "--no-dyneval")
    results = json.loads((out / "results.json").read_text())
    assert results["budget"].startswith("equal training time: 0.05 minutes")
    assert [row["model"] for row in results["rows"]] == ["mogrifier_lstm", "transformer_lm"]
    for row in results["rows"]:
        seconds_per_update, _ = speed_of(out / row["model"] / "calibration.log")
        assert row["updates"] == max(1, round(3.0 / seconds_per_update)), row["model"]
        assert row["dyneval"] is None and row["pointer"] is not None
    warmup = (out / "transformer_lm" / "train.log").read_text()
    updates = next(r["updates"] for r in results["rows"] if r["model"] == "transformer_lm")
    assert f"'warmup_updates': {max(1, round(0.08 * updates))}" in warmup
