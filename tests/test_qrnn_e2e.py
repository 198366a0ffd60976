"""`--arch qrnn` through fairseq-train and fairseq-eval-lm, in subprocesses, on the tiny corpus."""
from conftest import eval_lm_loss, run_fairseq, train_args, valid_losses


def qrnn_train_args(data_bin, save_dir, *extra):
    args = train_args(data_bin, save_dir, *extra)
    args[args.index("--arch") + 1] = "qrnn"
    return args


def test_qrnn_trains_and_eval_lm_reproduces_its_valid_loss(tiny_bin, tmp_path):
    # every regulariser on, zoneout included; validation runs when --max-update stops training
    proc = run_fairseq(
        "train",
        qrnn_train_args(tiny_bin, tmp_path / "ck", "--max-update", "6", "--zoneout", "0.1", "--eval-batch-size", "10"),
    )
    out = proc.stdout + proc.stderr
    assert "QRNNLanguageModel" in out and "window=2" in out
    (trained,) = valid_losses(out)
    ev = run_fairseq(
        "eval_lm",
        [tiny_bin, "--task", "awd_language_modeling", "--path", tmp_path / "ck" / "checkpoint_last.pt",
         "--gen-subset", "valid", "--test-batch-size", "10", "--no-progress-bar"],
    )
    # the same streams, windows and carried state (c and the first layer's previous input)
    assert abs(eval_lm_loss(ev.stdout + ev.stderr) - trained) < 1e-3
    # fairseq-eval-lm's default: one stream (batch size 1), every token scored in order
    single = run_fairseq(
        "eval_lm",
        [tiny_bin, "--task", "awd_language_modeling", "--path", tmp_path / "ck" / "checkpoint_last.pt",
         "--gen-subset", "valid", "--no-progress-bar"],
    )
    single_loss = eval_lm_loss(single.stdout + single.stderr)
    assert abs(single_loss - trained) < 0.1
    # the cache pointer reads the same features and state: with lambda 0 it is the model alone
    pointer = run_fairseq(
        "eval_lm",
        [tiny_bin, "--task", "awd_cache_pointer", "--path", tmp_path / "ck" / "checkpoint_last.pt",
         "--gen-subset", "valid", "--no-progress-bar", "--pointer-window", "50", "--pointer-lambda", "0"],
    )
    assert abs(eval_lm_loss(pointer.stdout + pointer.stderr) - single_loss) < 1e-3
