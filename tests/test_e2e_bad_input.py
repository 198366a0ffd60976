"""Bad input through the fairseq tools: the plugin's one-line errors reach the user where the
wiring is the point (fairseq-train's and fairseq-eval-lm's own loading of tasks, models and
options), and nothing is written."""
import pytest

from helpers import last_line, run_fairseq, train_args


@pytest.fixture(scope="module")
def checkpoint(tiny_bin, tmp_path_factory):
    save = tmp_path_factory.mktemp("bad_input")
    run_fairseq("train", train_args(tiny_bin, save, "--max-update", "1", "--disable-validation"))
    return save / "checkpoint_last.pt"


def test_eval_lm_without_our_task_is_refused_naming_the_flag(checkpoint, tiny_bin, tmp_path):
    proc = run_fairseq("eval_lm", [tiny_bin, "--path", checkpoint, "--no-progress-bar"], check=False)
    assert proc.returncode != 0 and "pass --task awd_language_modeling" in last_line(proc), last_line(proc)


def test_our_model_under_fairseqs_language_modeling_task_is_refused_naming_the_flag(tiny_bin, tmp_path):
    args = train_args(tiny_bin, tmp_path / "ck", "--max-update", "1")
    args[args.index("--task") + 1] = "language_modeling"
    i = args.index("--bptt")
    args[i:i + 2] = ["--tokens-per-sample", "20", "--sample-break-mode", "none"]  # the language_modeling task's flags
    proc = run_fairseq("train", args, check=False)
    assert proc.returncode != 0 and last_line(proc).startswith("ValueError: AWDLSTMModel under fairseq's language_modeling"), \
        last_line(proc)
    assert last_line(proc).endswith("pass --task awd_language_modeling")
    assert not list((tmp_path / "ck").glob("*.pt"))


def test_dropout_out_of_range_through_fairseq_train(tiny_bin, tmp_path):
    proc = run_fairseq("train", train_args(tiny_bin, tmp_path / "ck", "--max-update", "1", "--dropouth", "1"),
                       check=False)
    assert proc.returncode != 0 and last_line(proc).startswith("ValueError: --dropouth 1.0 is outside [0, 1)")
    assert not list((tmp_path / "ck").glob("*.pt"))


@pytest.mark.parametrize("flag", ["--fp16", "--bf16"])
def test_mixed_precision_through_fairseq_train(tiny_bin, tmp_path, flag):
    proc = run_fairseq("train", train_args(tiny_bin, tmp_path / "ck", "--max-update", "1", flag), check=False)
    assert proc.returncode != 0 and last_line(proc).startswith(f"ValueError: {flag} with --cpu: "), last_line(proc)
    assert not list((tmp_path / "ck").glob("*.pt"))


def test_batch_size_through_fairseq_eval_lm(checkpoint, tiny_bin):
    proc = run_fairseq("eval_lm", [tiny_bin, "--task", "awd_language_modeling", "--path", checkpoint,
                                   "--batch-size", "4", "--no-progress-bar"], check=False)
    assert proc.returncode != 0 and "pass --test-batch-size 4 instead" in last_line(proc), last_line(proc)


def test_batch_size_valid_through_fairseq_train(tiny_bin, tmp_path):
    proc = run_fairseq("train", train_args(tiny_bin, tmp_path / "ck", "--max-update", "1", "--batch-size-valid", "3"),
                       check=False)
    assert proc.returncode != 0 and "pass --eval-batch-size 3 instead" in last_line(proc), last_line(proc)
    assert not list((tmp_path / "ck").glob("*.pt"))


@pytest.mark.parametrize("flags, message", [(["--pointer-window", "0"], "--pointer-window must be >= 1"),
                                            (["--pointer-lambda", "1.5"], "--pointer-lambda must lie in [0, 1]"),
                                            (["--pointer-lambda", "-0.1"], "--pointer-lambda must lie in [0, 1]")])
def test_pointer_options_out_of_range(checkpoint, tiny_bin, flags, message):
    proc = run_fairseq("eval_lm", [tiny_bin, "--task", "awd_cache_pointer", "--path", checkpoint, *flags,
                                   "--no-progress-bar"], check=False)
    assert proc.returncode != 0 and message in last_line(proc), last_line(proc)
