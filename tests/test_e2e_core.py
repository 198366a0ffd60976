"""End to end through fairseq's own command-line tools, in subprocesses, on tiny corpora."""
import math

import torch
from fairseq.data import Dictionary

from helpers import eval_lm_loss, run_fairseq, train_args, valid_losses


def _out(proc):
    return proc.stdout + proc.stderr


def test_valid_loss_during_training_equals_eval_lm(tiny_bin, tmp_path):
    proc = run_fairseq("train", train_args(tiny_bin, tmp_path / "ck", "--max-update", "30", "--eval-batch-size", "10"))
    (trained,) = valid_losses(_out(proc))
    ckpt = tmp_path / "ck" / "checkpoint_last.pt"
    torch.load(ckpt, weights_only=True)  # what torch >= 2.6 (and fairseq-eval-lm) does
    ev = run_fairseq(
        "eval_lm",
        [tiny_bin, "--task", "awd_language_modeling", "--path", ckpt, "--gen-subset", "valid",
         "--test-batch-size", "10", "--no-progress-bar"],
    )
    assert abs(eval_lm_loss(_out(ev)) - trained) < 1e-3


def test_eval_lm_scores_every_token_of_the_split(tiny_bin, tmp_path):
    proc = run_fairseq("train", train_args(tiny_bin, tmp_path / "ck", "--max-update", "3", "--disable-validation"))
    ev = run_fairseq(
        "eval_lm",
        [tiny_bin, "--task", "awd_language_modeling", "--path", tmp_path / "ck" / "checkpoint_last.pt",
         "--gen-subset", "test", "--no-progress-bar"],
    )
    # one </s> per line, all scored at batch size 1 (the leading </s> is context only)
    from fairseq.data import Dictionary, data_utils

    lines = data_utils.load_indexed_dataset(str(tiny_bin / "test"), Dictionary.load(str(tiny_bin / "dict.txt")))
    expected = sum(len(lines[i]) for i in range(len(lines)))
    assert f"Evaluated {expected:,} tokens" in _out(ev)
    del proc


def test_carrying_the_state_beats_resetting_it(tiny_bin, tmp_path):
    # short windows, so that most of the context a token has lies in earlier windows; no dropout,
    # so one epoch separates the two
    no_dropout = ["--dropout", "0", "--dropouth", "0", "--dropouti", "0", "--dropoute", "0", "--wdrop", "0"]
    common = ["--max-epoch", "1", "--no-save", "--eval-batch-size", "10", "--fixed-bptt", "--bptt", "5", *no_dropout]
    carried = valid_losses(_out(run_fairseq("train", train_args(tiny_bin, tmp_path / "a", *common))))
    reset = valid_losses(
        _out(run_fairseq("train", train_args(tiny_bin, tmp_path / "b", *common, "--reset-state-every-window")))
    )
    assert carried[-1] < reset[-1], (carried, reset)


def test_mid_epoch_resume_matches_the_uninterrupted_run(tiny_bin, tmp_path):
    """Stopped after 3 updates inside the first epoch and resumed to 6: the epoch iterator and the
    carried recurrent state both come back from checkpoint_last.pt, so the weights equal those of
    one run of 6 updates bit for bit (restarting the state from zeros would change them)."""
    common = ["--disable-validation", "--save-interval-updates", "3"]
    run_fairseq("train", train_args(tiny_bin, tmp_path / "whole", *common, "--max-update", "6"))
    run_fairseq("train", train_args(tiny_bin, tmp_path / "split", *common, "--max-update", "3"))
    first = torch.load(tmp_path / "split" / "checkpoint_last.pt", weights_only=True)
    assert first["extra_state"]["train_iterator"]["iterations_in_epoch"] == 3  # stopped mid-epoch
    assert first["extra_state"]["AWDLanguageModelingTask"]["train_stream"]  # the carried state
    resumed = _out(run_fairseq("train", train_args(tiny_bin, tmp_path / "split", *common, "--max-update", "6")))
    assert "no recurrent state saved" not in resumed
    whole = torch.load(tmp_path / "whole" / "checkpoint_last.pt", weights_only=True)["model"]
    split = torch.load(tmp_path / "split" / "checkpoint_last.pt", weights_only=True)["model"]
    assert whole.keys() == split.keys()
    assert all(torch.equal(whole[k], split[k]) for k in whole)


def test_real_ptb_slice_trains_and_evaluates(ptb_slice_bin, tmp_path):
    proc = run_fairseq(
        "train", train_args(ptb_slice_bin, tmp_path / "ck", "--max-epoch", "2", "--eval-batch-size", "1", "--batch-size", "20", "--bptt", "35")
    )
    losses = valid_losses(_out(proc))
    # learnt: an untrained model scores about log2(V) bits; whether epoch 2 beats epoch 1 at this
    # size and lr is up to the random draws, so that is not asserted
    uniform = math.log2(len(Dictionary.load(str(ptb_slice_bin / "dict.txt"))))
    assert len(losses) == 2 and max(losses) < uniform - 3, (losses, uniform)
    ev = run_fairseq(
        "eval_lm",
        [ptb_slice_bin, "--task", "awd_language_modeling", "--path", tmp_path / "ck" / "checkpoint_last.pt",
         "--gen-subset", "valid", "--no-progress-bar"],
    )
    assert abs(eval_lm_loss(_out(ev)) - losses[-1]) < 1e-3


def test_missing_batch_size_is_a_clear_error(tiny_bin, tmp_path):
    args = [a for a in train_args(tiny_bin, tmp_path / "ck", "--max-update", "1", "--max-tokens", "500")]
    i = args.index("--batch-size")
    del args[i : i + 2]
    proc = run_fairseq("train", args, check=False)
    assert proc.returncode != 0 and "needs --batch-size" in _out(proc)


def test_split_shorter_than_a_window_is_a_clear_error(tiny_bin, tmp_path):
    proc = run_fairseq("train", train_args(tiny_bin, tmp_path / "ck", "--max-update", "1", "--bptt", "100000"), check=False)
    assert proc.returncode != 0 and "shorter than one window" in _out(proc)


def test_dictionary_mismatch_is_a_clear_error(tiny_bin, ptb_slice_bin, tmp_path):
    run_fairseq("train", train_args(tiny_bin, tmp_path / "ck", "--max-update", "1", "--disable-validation"))
    proc = run_fairseq(
        "eval_lm",
        [ptb_slice_bin, "--task", "awd_language_modeling", "--path", tmp_path / "ck" / "checkpoint_last.pt",
         "--no-progress-bar"],
        check=False,
    )
    assert proc.returncode != 0 and "dict.txt" in _out(proc) and "vocabulary" in _out(proc)
