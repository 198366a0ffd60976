"""awd_fairseq.tools.fairseq_logs against log lines made the way fairseq makes them: fairseq's own
JsonProgressBar fed known stats, through fairseq-train's logging format and hydra's, and
fairseq-eval-lm's summary lines written with its format strings."""
import io
import json
import logging
from collections import OrderedDict
from pathlib import Path

import pytest

from awd_fairseq.tools import fairseq_logs

FAIRSEQ_FORMAT = "%(asctime)s | %(levelname)s | %(name)s | %(message)s"  # fairseq_cli/train.py
HYDRA_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # hydra's default job_logging


def _fairseq_bar_output(fmt: str) -> str:
    """Drive fairseq's JsonProgressBar as fairseq_cli/train.py does: log(train_inner) every
    --log-interval updates, print(train) at the epoch's end, print(valid) after validation."""
    from fairseq.logging import progress_bar
    from fairseq.logging.meters import AverageMeter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(fmt=fmt, datefmt="%Y-%m-%d %H:%M:%S"))
    bar_logger = progress_bar.logger
    bar_logger.addHandler(handler)
    # setLevel, not `.level =`: it clears logging's isEnabledFor cache, which an earlier INFO call
    # under a WARNING root may have filled; and a dictConfig may have disabled the logger
    old_level, old_disabled = bar_logger.level, bar_logger.disabled
    bar_logger.setLevel(logging.INFO)
    bar_logger.disabled = False
    try:
        bar = progress_bar.JsonProgressBar(list(range(4)), epoch=3, prefix="epoch 003", log_interval=2)
        for i in bar:
            loss = AverageMeter()
            loss.update(7.0 + i, 10)
            bar.log(OrderedDict(loss=loss, ppl=2.0 ** (7.0 + i), wps=1234.5, num_updates=10 + i), tag="train_inner", step=10 + i)
        train = AverageMeter()
        train.update(6.25, 1)
        bar.print(OrderedDict(loss=train, ppl=2 ** 6.25, num_updates=13, wall=42), tag="train", step=13)
        bar.print(OrderedDict(loss=5.5, ppl=2 ** 5.5, num_updates=13, best_loss=5.5), tag="valid", step=13)
        bar.print(OrderedDict(loss=5.75, ppl=2 ** 5.75, num_updates=13), tag="test", step=13)
    finally:
        bar_logger.removeHandler(handler)
        bar_logger.setLevel(old_level)
        bar_logger.disabled = old_disabled
    # interleave an unrelated fairseq line, as the real console output has
    return "2026-12-01 21:00:00 | INFO | fairseq.trainer | begin training epoch 3\n" + stream.getvalue()


@pytest.mark.parametrize("fmt", [FAIRSEQ_FORMAT, HYDRA_FORMAT], ids=["fairseq", "hydra"])
def test_records_from_fairseqs_progress_bar(fmt):
    text = _fairseq_bar_output(fmt)
    inner = fairseq_logs.train_inner(text)
    # steps 10..13 with log_interval 2: fairseq logs the even steps only
    assert [r["num_updates"] for r in inner] == [10, 12]
    assert [r["loss"] for r in inner] == [7.0, 9.0]
    assert inner[1]["ppl"] == pytest.approx(2.0 ** 9, rel=1e-5)
    assert inner[0]["wps"] == 1234.5 and inner[0]["epoch"] == 3
    assert isinstance(inner[0]["num_updates"], int)

    (train,) = fairseq_logs.train_epochs(text)
    assert train == {"epoch": 3, "loss": 6.25, "ppl": pytest.approx(2 ** 6.25, rel=1e-5), "num_updates": 13, "wall": 42}
    (valid,) = fairseq_logs.valid(text)
    assert valid["loss"] == 5.5 and valid["best_loss"] == 5.5 and valid["num_updates"] == 13
    assert fairseq_logs.valid(text, subset="test")[0]["loss"] == 5.75
    assert [r.tag for r in fairseq_logs.read_records(text)] == ["train_inner", "train_inner", "train", "valid", "test"]
    assert fairseq_logs.read_records(text)[0].time is not None


def test_written_lines_and_files(tmp_path: Path):
    lines = [
        '2026-12-01 21:00:09 | INFO | valid | {"epoch": 1, "valid_loss": "6.9", "valid_ppl": "119.43", '
        '"valid_wps": "5e+04", "valid_num_updates": "40", "valid_best_loss": "6.9"}',
        "2026-12-01 21:00:09 | INFO | fairseq_cli.train | end of epoch 1 (average epoch stats below)",
        '{"epoch": 2, "valid_loss": "inf"}',  # what --log-file writes: the bare message
        "2026-12-01 21:00:10 | INFO | valid | {not json}",
    ]
    path = tmp_path / "train.log"
    path.write_text("\n".join(lines) + "\n")
    for source in (path, "\n".join(lines), lines):
        records = fairseq_logs.read_records(source)
        assert len(records) == 2
        assert records[0].stats == {"epoch": 1, "loss": 6.9, "ppl": 119.43, "wps": 50000.0, "num_updates": 40, "best_loss": 6.9}
        assert records[1].tag is None and records[1].stats["valid_loss"] == float("inf")


def test_eval_lm_summary_lines():
    # fairseq_cli/eval_lm.py's two format strings, filled in here
    evaluated = "Evaluated {:,} tokens in {:.1f}s ({:.2f} tokens/s)".format(82430, 12.345, 82430 / 12.345)
    loss = "Loss (base 2): {:.4f}, Perplexity: {:.2f}".format(6.5, 2 ** 6.5)
    text = "\n".join(
        f"2026-12-01 21:00:00 | INFO | fairseq_cli.eval_lm | {m}" for m in ("num. model params: 1,234", evaluated, loss)
    )
    s = fairseq_logs.eval_lm_summary(text)
    assert (s.tokens, s.seconds, s.loss_base2, s.bits_per_token) == (82430, 12.3, 6.5, 6.5)
    assert s.perplexity == pytest.approx(2 ** 6.5, abs=0.005)
    with pytest.raises(ValueError, match="Loss \\(base 2\\)"):
        fairseq_logs.eval_lm_summary("2026-12-01 | INFO | x | nothing here")


def test_model_params():
    # fairseq_cli/train.py: "num. shared model params: {:,} (num. trained: {:,})"; older: "num. model params: {}"
    line = "num. shared model params: {:,} (num. trained: {:,})".format(24221600, 24221600)
    assert fairseq_logs.model_params(f"2026-12-01 21:00:00 | INFO | fairseq_cli.train | {line}") == 24221600
    assert fairseq_logs.model_params("[t][fairseq_cli.train][INFO] - num. model params: 1234 (num. trained: 1234)") == 1234
    assert fairseq_logs.model_params("nothing") is None


def test_parse_value_keeps_strings():
    assert fairseq_logs.parse_value("12") == 12 and fairseq_logs.parse_value("1.5e-3") == 1.5e-3
    assert fairseq_logs.parse_value("abc") == "abc" and fairseq_logs.parse_value([1]) == [1]
    assert json.loads(json.dumps(fairseq_logs.perplexity(3.0))) == 8.0
