"""AWD-LSTM-MoS end to end through fairseq-train and fairseq-eval-lm on the tiny corpus."""
import math

import pytest
import torch
from fairseq.data import Dictionary

from helpers import TINY_MOS, eval_lm_loss, run_fairseq, train_args, valid_losses

# small, with a chunk bound of a few tokens so that training and scoring run chunked
MOS = ["--arch", "awd_lstm_mos", *TINY_MOS, "--mos-chunk-elements", "100000", "--bptt-max-extra", "40"]


def _out(proc):
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def trained(tiny_bin, tmp_path_factory):
    save = tmp_path_factory.mktemp("mos")
    proc = run_fairseq("train", train_args(tiny_bin, save, *MOS, "--max-update", "30", "--eval-batch-size", "10"))
    return save, valid_losses(_out(proc))


def test_trains_and_eval_lm_equals_the_validation_during_training(trained, tiny_bin):
    save, losses = trained
    (valid,) = losses
    assert valid < math.log2(len(Dictionary.load(str(tiny_bin / "dict.txt"))))  # learnt something
    ckpt = save / "checkpoint_last.pt"
    state = torch.load(ckpt, weights_only=True)  # as torch >= 2.6 (and fairseq-eval-lm) loads it
    assert state["model"]["decoder.softmax.latent.weight"].shape == (3 * 16, 20)
    ev = run_fairseq("eval_lm", [tiny_bin, "--task", "awd_language_modeling", "--path", ckpt, "--gen-subset", "valid",
                                 "--test-batch-size", "10", "--no-progress-bar"])
    assert abs(eval_lm_loss(_out(ev)) - valid) < 1e-3


def test_finetuning_continues_from_the_trained_model(trained, tiny_bin, tmp_path):
    save, (valid,) = trained
    proc = run_fairseq("train", train_args(
        tiny_bin, tmp_path / "ft", *MOS, "--finetune-from-model", save / "checkpoint_last.pt", "--asgd-from-start",
        "--max-update", "10", "--eval-batch-size", "10", "--lr", "5"))
    (finetuned,) = valid_losses(_out(proc))
    assert finetuned < valid + 0.5  # started from the trained weights, not from scratch (about log2 V)


def test_cache_pointer_with_lambda_zero_is_the_model_alone(trained, tiny_bin):
    save, _ = trained
    ckpt = save / "checkpoint_last.pt"
    common = [tiny_bin, "--path", ckpt, "--gen-subset", "test", "--no-progress-bar"]
    plain = eval_lm_loss(_out(run_fairseq("eval_lm", [*common, "--task", "awd_language_modeling"])))
    pointer = [*common, "--task", "awd_cache_pointer", "--pointer-window", "20", "--pointer-theta", "0.5"]
    off = eval_lm_loss(_out(run_fairseq("eval_lm", [*pointer, "--pointer-lambda", "0"])))
    on = eval_lm_loss(_out(run_fairseq("eval_lm", [*pointer, "--pointer-lambda", "0.2"])))
    assert abs(off - plain) < 1e-3 and abs(on - plain) > 1e-3
