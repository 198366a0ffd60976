"""Checks of the options `awd_lstm` and `qrnn` are built with, and of the precision they run in,
each failing with one line that names the flag to change (fairseq prints the exception's message
as the last line of its traceback).

The original (salesforce/awd-lstm-lm) checks none of its flags: a dropout of 1 there zeroes every
activation and rescales by 1 / (1 - p), dividing by zero, and a negative one raises deep inside
torch's Bernoulli sampling.
"""
import torch

# every probability the models draw a mask with; zoneout is qrnn's only
PROBABILITIES = ("dropout", "dropouth", "dropouti", "dropoute", "wdrop", "zoneout")
SIZES = ("emsize", "nhid", "nlayers")


def _get(cfg, name):
    try:
        return getattr(cfg, name)
    except (AttributeError, KeyError):  # argparse Namespace / DictConfig without the field
        return None


def check_model_config(cfg) -> None:
    """Raise ValueError for a dropout outside [0, 1) or a size below 1."""
    for name in PROBABILITIES:
        p = _get(cfg, name)
        if p is not None and not 0.0 <= float(p) < 1.0:
            raise ValueError(
                f"--{name} {p} is outside [0, 1): it is the probability of dropping a unit "
                f"(0 turns it off); pass a value >= 0 and < 1"
            )
    for name in SIZES:
        n = _get(cfg, name)
        if n is not None and int(n) < 1:
            raise ValueError(f"--{name} {n} must be at least 1")


def check_precision(fp16: bool, bf16: bool, amp: bool, cpu: bool) -> None:
    """Refuse --fp16 / --bf16 / --amp without a CUDA device, naming the flag.

    Without it fairseq fails far from the cause: --fp16 asks torch for a CUDA device ("Torch not
    compiled with CUDA enabled"), --bf16 takes the missing GPU to mean a TPU and asks for torch_xla,
    and --amp trains on in fp32 (fairseq's AMP is CUDA autocast, a no-op on the CPU) with a loss
    scaler, while the log says amp. --bf16 is refused on a GPU as well: the criterion's
    --bf16-autocast is the plugin's bfloat16 route there.
    """
    given = [flag for flag, on in (("--fp16", fp16), ("--bf16", bf16), ("--amp", amp)) if on]
    if not given:
        return
    where = "with --cpu" if cpu else "without a CUDA device" if not torch.cuda.is_available() else None
    if where is None:
        if bf16:  # on a GPU too: fairseq 0.12's trainer takes --bf16 to mean --tpu
            raise ValueError("--bf16 in fairseq 0.12 means a TPU (it asks torch_xla for a device); "
                             "on a GPU pass --bf16-autocast instead of --bf16")
        return
    flags = " / ".join(given)
    raise ValueError(
        f"{flags} {where}: fairseq's mixed precision needs a CUDA GPU (--bf16 without one means a TPU). "
        f"Drop {flags} to train in fp32 on the CPU, or run on a GPU without --cpu"
    )


def check_task(task, model_name: str) -> None:
    """Refuse fairseq's `language_modeling` task for our models.

    It reads blocks of --tokens-per-sample tokens, each from a zero state; fairseq-eval-lm takes
    its task from the command line, not from the checkpoint, so without `--task
    awd_language_modeling` it would print a perplexity of another evaluation than training's.
    """
    from fairseq.tasks.language_modeling import LanguageModelingTask

    if isinstance(task, LanguageModelingTask):
        raise ValueError(
            f"{model_name} under fairseq's language_modeling task would score blocks of "
            "--tokens-per-sample tokens, each from a zero state (the tools take the task from the command "
            "line, not from the checkpoint): pass --task awd_language_modeling"
        )


def check_build(cfg, task, model_name: str) -> None:
    """Everything `awd_lstm` / `qrnn` check before building (called from their build_model)."""
    check_model_config(cfg)
    check_task(task, model_name)
