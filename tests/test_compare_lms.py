"""scripts/compare_lms.py: its table and plots from made-up runs (unit), and the whole comparison
end to end on a tiny corpus with tiny budgets (e2e): every model has a row, the plots are PNG
images, every run scored the same tokens, --tensorboard-logdir writes event files, and a rerun
reuses the finished steps."""
import json
import math
import os
import struct
import subprocess
import sys

import pytest

from awd_fairseq.tools.compare import pipeline, report
from awd_fairseq.tools.compare.specs import MODELS

from conftest import REPO, _head, make_data_bin


def _row(name, valid_loss, tokens=(500, 487), pointer=True):
    p = {"theta": 0.5, "lambda": 0.1, "valid": {"tokens": tokens[0], "loss": valid_loss - 1},
         "test": {"tokens": tokens[1], "loss": valid_loss - 0.5}} if pointer else None
    return {"model": name, "notes": "", "params": 24_000_000, "tokens_per_s": 1234.5, "peak_rss_mib": 900.0,
            "train_seconds": 1200.0, "updates": 40, "curve": [{"seconds": 60.0, "updates": 20, "loss": valid_loss + 1},
                                                                {"seconds": 120.0, "updates": 40, "loss": valid_loss}],
            "valid": {"loss": valid_loss, "tokens": tokens[0]}, "test": {"loss": valid_loss + 0.1, "tokens": tokens[1]},
            "pointer": p}


def test_table_reads_perplexity_or_bits_per_character():
    rows = [_row("awd_lstm", 6.0), _row("lstm_lm", 7.0, pointer=False)]
    table = report.markdown_table(rows).splitlines()
    assert len(table) == 4 and "valid ppl" in table[0] and "bpc" not in table[0]
    cells = [c.strip() for c in table[2].split("|")]
    assert cells[2] == "24.00M" and cells[3] == "1234" and cells[5] == "20.0"
    assert cells[7] == f"{2 ** 6.0:.2f}" and cells[8] == f"{2 ** 6.1:.2f}" and cells[9] == f"{2 ** 5.0:.2f}"
    assert table[3].count("n/a") == 3  # lstm_lm: no pointer
    char = report.markdown_table(rows, char_level=True).splitlines()
    assert "valid bpc" in char[0] and [c.strip() for c in char[2].split("|")][7] == "6.000"


def test_scored_token_counts_are_checked():
    assert pipeline.check_scored_tokens([_row("a", 6.0), _row("b", 7.0)]) == []
    problems = pipeline.check_scored_tokens([_row("a", 6.0), _row("b", 7.0, tokens=(499, 487))])
    assert len(problems) == 1 and problems[0].startswith("valid")


def test_budget_flags():
    assert pipeline.Budget(updates=10).flags() == ["--max-update", "10"]
    assert pipeline.Budget(minutes=30).flags() == ["--stop-time-hours", "0.5"]
    with pytest.raises(ValueError, match="--budget-updates"):
        pipeline.Budget().flags()


def test_curve_times_from_the_log(tmp_path):
    log = tmp_path / "train.log"
    log.write_text('2026-12-01 21:00:30 | INFO | valid | {"epoch": 1, "valid_loss": "7.5", "valid_num_updates": "10"}\n'
                   '2026-12-01 21:01:30 | INFO | valid | {"epoch": 2, "valid_loss": "7", "valid_num_updates": "20"}\n')
    started = report._timestamp("2026-12-01 21:00:00")
    assert report.curve(log, started) == [{"seconds": 30.0, "updates": 10, "loss": 7.5},
                                          {"seconds": 90.0, "updates": 20, "loss": 7.0}]


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


@pytest.mark.e2e
def test_compare_end_to_end(tmp_path):
    src = REPO / "data" / "wikitext-2"
    data = make_data_bin(tmp_path / "corpus", {"train": _head(src / "train.txt.xz", 100),
                                               "valid": _head(src / "valid.txt.xz", 12),
                                               "test": _head(src / "test.txt.xz", 12)})
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "scripts" / "compare_lms.py"), str(data), "--out", str(out), "--budget-updates", "2",
           "--size", "tiny", "--cpu", "--pointer-window", "20", "--log-interval", "1", "--no-progress", "--tensorboard"]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    table = (out / "table.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == list(MODELS)
    results = json.loads((out / "results.json").read_text())
    assert results["problems"] == [] and "identical for every run" in table
    for row in results["rows"]:
        assert row["updates"] == 2 and row["params"] > 0 and row["peak_rss_mib"] > 50
        assert all(math.isfinite(row[s]["loss"]) for s in ("valid", "test"))
        assert (row["pointer"] is None) == (row["model"] == "lstm_lm")
    for name in ("valid_vs_wall.png", "valid_vs_updates.png"):
        width, height = _png_size(out / name)
        assert width > 100 and height > 100
    events = list((out / "awd_lstm" / "tensorboard").rglob("events.out.tfevents.*"))
    assert {e.parent.name for e in events} >= {"train_inner", "valid"}

    stamp = (out / "qrnn" / "train.log").stat().st_mtime
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("reusing the finished run") == len(MODELS) * 4 - 1  # train, valid, test each; pointer but for lstm_lm
    assert (out / "qrnn" / "train.log").stat().st_mtime == stamp
