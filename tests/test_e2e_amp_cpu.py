"""fairseq-train --amp on the CPU (in this process; fairseq's CUDA GradScaler replaced by torch's CPU
one, the plugin's refusal of --amp without a GPU lifted): CUDA autocast does nothing on the CPU, so
what is left of --amp is the loss scaling, and with the gradients unscaled once (optim/amp.py) the
run must end with the fp32 run's weights and NT-ASGD averages, bit for bit (the scale is a power of
two). This is the trainer's whole AMP route: loss scaling, multiply_grads, clipping, the per-window
lr scale, NT-ASGD's step and averaging."""
import torch

from awd_fairseq.tools.bench.op_count import fairseq_train

from helpers import TINY_MODEL, USER_DIR


def train(data, save_dir, *extra):
    fairseq_train([
        data, "--user-dir", USER_DIR, "--cpu", "--num-workers", "0", "--seed", "3", "--task", "awd_language_modeling",
        "--arch", "awd_lstm", *TINY_MODEL, "--criterion", "awd_split_cross_entropy", "--optimizer", "nt_asgd",
        "--lr-scheduler", "awd_when", "--lr", "30", "--clip-norm", "0.25", "--asgd-from-start", "--batch-size", "10",
        "--bptt", "20", "--max-update", "12", "--save-dir", save_dir, "--no-epoch-checkpoints", "--log-format",
        "simple", "--no-progress-bar", *extra,
    ])
    return torch.load(save_dir / "checkpoint_last.pt", map_location="cpu", weights_only=False)


def test_amp_on_the_cpu_trains_exactly_as_fp32(tiny_bin, tmp_path, monkeypatch):
    reference = train(tiny_bin, tmp_path / "fp32")
    monkeypatch.setattr(torch.cuda.amp, "GradScaler", lambda **kwargs: torch.amp.GradScaler("cpu", **kwargs))
    monkeypatch.setattr("awd_fairseq.tasks.input_checks.check_precision", lambda **kwargs: None)
    amp = train(tiny_bin, tmp_path / "amp", "--amp")
    assert amp["cfg"]["common"]["amp"] and not reference["cfg"]["common"]["amp"]
    assert reference["optimizer_history"][-1]["num_updates"] == amp["optimizer_history"][-1]["num_updates"] == 12
    for name, value in reference["model"].items():
        assert torch.equal(value, amp["model"][name]), name
    ref_state, amp_state = reference["last_optimizer_state"], amp["last_optimizer_state"]
    assert ref_state["nt_asgd"]["num_averaged"] == amp_state["nt_asgd"]["num_averaged"] > 0
    for key, state in ref_state["state"].items():
        assert torch.equal(state["ax"], amp_state["state"][key]["ax"])


def test_bf16_autocast_trains_within_bfloat16_rounding_of_fp32(tiny_bin, tmp_path, monkeypatch):
    """--bf16-autocast through fairseq-train, on the CPU (the GPU check lifted) with the QRNN, whose
    projections and forget-mult run in bfloat16 there: the weights and optimizer stay float32, the
    weights differ from fp32's (autocast acted) and the validation loss stays within 0.05 bits."""
    qrnn = ["--arch", "qrnn", "--num-workers", "0"]
    reference = train(tiny_bin, tmp_path / "fp32", *qrnn)
    monkeypatch.setattr("awd_fairseq.modules.autocast.check_bf16_supported", lambda device: None)
    bf16 = train(tiny_bin, tmp_path / "bf16", *qrnn, "--bf16-autocast")
    assert bf16["cfg"]["criterion"]["bf16_autocast"] and not reference["cfg"]["criterion"]["bf16_autocast"]
    for name, value in reference["model"].items():
        assert bf16["model"][name].dtype == value.dtype == torch.float32, name
    moved = max(float((bf16["model"][name] - value).abs().max()) for name, value in reference["model"].items())
    assert moved > 0  # float32 end to end would be bit for bit the reference
    fp32_loss, bf16_loss = reference["extra_state"]["val_loss"], bf16["extra_state"]["val_loss"]
    print(fp32_loss, bf16_loss)
    assert abs(bf16_loss - fp32_loss) < 0.05, (fp32_loss, bf16_loss)
