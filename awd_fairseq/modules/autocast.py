"""bfloat16 autocast for training on Ampere / Hopper GPUs, the plugin's route to
bf16: fairseq 0.12's `--bf16` means a TPU (it sets --tpu and asks torch_xla for a device).

`torch.autocast(device_type, dtype=torch.bfloat16)` runs the matrix products and the recurrent
kernels in bfloat16 and keeps reductions such as log_softmax in float32, while the weights, the
gradients and the optimizer stay float32 (no fp16 master copies as with --fp16) and no loss scaling
is needed: bfloat16 has float32's exponent range. The criterion `awd_split_cross_entropy` enters it
around the training forward pass and loss with `--bf16-autocast`; validation and fairseq-eval-lm run
in float32.
"""
import contextlib

import torch

FLAG = "--bf16-autocast"


def check_bf16_supported(device: torch.device) -> None:
    """One-line error where bfloat16 autocast cannot run: the CPU (torch's CPU LSTM in bfloat16 is a
    oneDNN primitive that most CPUs lack) and GPUs before Ampere."""
    if device.type != "cuda":
        raise ValueError(f"{FLAG} is for GPUs (Ampere or newer); on the CPU train in float32 (drop {FLAG})")
    if not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"{FLAG}: {torch.cuda.get_device_name(device)} has no bfloat16 support (Ampere or newer needed); "
            "drop it, or use --fp16 / --amp"
        )


def bf16_autocast(enabled: bool, device: torch.device):
    """The autocast context for `device` when `enabled`, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    check_bf16_supported(device)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
