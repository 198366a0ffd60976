"""`--arch qrnn` through fairseq-train and fairseq-eval-lm, in subprocesses, on the tiny corpus."""
import math

import torch

from helpers import eval_lm_loss, run_fairseq, train_args, valid_losses


def qrnn_train_args(data_bin, save_dir, *extra):
    args = train_args(data_bin, save_dir, *extra)
    args[args.index("--arch") + 1] = "qrnn"
    return args


def one_stream_loss(ckpt, data, split):
    """Mean -log2 p over the split read as one stream in one forward pass (no windows, no carried
    state to get wrong): what fairseq-eval-lm's default batch size of one stream must print."""
    from fairseq import checkpoint_utils

    from awd_fairseq.tasks.awd_language_modeling import read_stream

    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(ckpt)], arg_overrides={"data": str(data)})
    tokens = read_stream(str(data / split), task.source_dictionary)  # </s>, then every line
    with torch.no_grad():
        lprobs = models[0].eval()(tokens[:-1].unsqueeze(0))[0][0]  # (N, V)
    return -lprobs.gather(1, tokens[1:].unsqueeze(1)).mean().item() / math.log(2)


def test_qrnn_trains_and_eval_lm_reproduces_its_valid_loss(tiny_bin, tmp_path):
    # every regulariser on, zoneout included; validation runs when --max-update stops training
    proc = run_fairseq(
        "train",
        qrnn_train_args(tiny_bin, tmp_path / "ck", "--max-update", "6", "--zoneout", "0.1", "--eval-batch-size", "10"),
    )
    out = proc.stdout + proc.stderr
    assert "QRNNLanguageModel" in out and "window=2" in out
    (trained,) = valid_losses(out)
    ckpt = tmp_path / "ck" / "checkpoint_last.pt"
    ev = run_fairseq(
        "eval_lm",
        [tiny_bin, "--task", "awd_language_modeling", "--path", ckpt,
         "--gen-subset", "valid", "--test-batch-size", "10", "--no-progress-bar"],
    )
    # the same 10 streams, windows and carried state (c and the first layer's previous input);
    # fairseq logs the valid loss to 3 decimals
    assert abs(eval_lm_loss(ev.stdout + ev.stderr) - trained) < 1e-3
    # fairseq-eval-lm's default: one stream, cut into --bptt windows with the state carried, equals
    # the whole split in one forward pass (printed to 4 decimals)
    single = run_fairseq(
        "eval_lm",
        [tiny_bin, "--task", "awd_language_modeling", "--path", ckpt, "--gen-subset", "valid", "--no-progress-bar"],
    )
    single_loss = eval_lm_loss(single.stdout + single.stderr)
    assert abs(single_loss - one_stream_loss(ckpt, tiny_bin, "valid")) < 1e-4
    # the cache pointer reads the same features and state: with lambda 0 it is the model alone
    pointer = run_fairseq(
        "eval_lm",
        [tiny_bin, "--task", "awd_cache_pointer", "--path", ckpt,
         "--gen-subset", "valid", "--no-progress-bar", "--pointer-window", "50", "--pointer-lambda", "0"],
    )
    assert abs(eval_lm_loss(pointer.stdout + pointer.stderr) - single_loss) < 1e-4
