"""Aten ops and device-to-host reads per training update, counted on the CPU, through an in-process
fairseq-train for awd_lstm (SGD and averaging phases), qrnn and awd_lstm_mos, against a bare PyTorch
loop of the same shapes and against fairseq's own transformer_lm, all in one run:

    python scripts/bench/count_ops.py                      # the embedded WikiText-2, tiny widths
    python scripts/bench/count_ops.py --data data-bin/ptb --detail

Per update = (counts of a run of N2 updates - counts of a run of N1) / (N2 - N1) (--updates N1 N2),
fixed --bptt windows (the op count of the CPU forget-mult grows with the window). How each op and read
is found and attributed (awd_fairseq/tools/bench/op_count.py):

* an op is one aten call seen by a TorchDispatchMode, labelled by the innermost frame of a known file:
  the plugin, fairseq, the autograd engine (backward kernels) or the bare loop;
* a read is what would make the host wait for the GPU: `.item()` / `float()` / `bool()`
  (`aten._local_scalar_dense`), ops whose output size depends on the data (`nonzero`, boolean masks),
  a blocking copy to the CPU, and `.tolist()` / `.numpy()` / `.cpu()` of a tensor that would be on
  the GPU. Those last ones dispatch nothing for a CPU tensor, so the counter wraps the methods while it
  counts and tracks which tensors would be on the GPU: every tensor of a sample after fairseq's
  `Trainer._prepare_sample` (which moves every tensor of the sample to CUDA on a GPU: a window's
  offsets, read by the task, are Python ints for that reason), every parameter, and every output of an
  op with such an input. A `non_blocking` copy to the CPU is listed apart: it waits for nothing.

The widths are tiny by default (the counts do not depend on them; --recipe-widths uses the recipes').
Three CPU paths dispatch differently from CUDA's: weight drop draws its mask with 3 ops instead of
one fused dropout, the QRNN's gate product goes through oneDNN, and the forget-mult runs one op per
step forward (about 4 backward) where CUDA launches one Triton kernel each way: its ops have a column
of their own ("CPU forget-mult"), to be left out when thinking of CUDA kernels.
"""
import argparse
import logging
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import torch

import awd_fairseq
from awd_fairseq.tools.bench import op_count
from awd_fairseq.tools.bench.bare_loops import BareLM, BareTrainer

logger = logging.getLogger("count_ops")

USER_DIR = os.path.dirname(awd_fairseq.__file__)
REPO = Path(USER_DIR).parent
BATCH, BPTT = 20, 70
TINY = {"awd_lstm": ["--emsize", "32", "--nhid", "64"], "qrnn": ["--emsize", "32", "--nhid", "64"],
        "awd_lstm_mos": ["--emsize", "16", "--nhid", "24", "--nhidlast", "20", "--n-experts", "3"]}
RECIPE_WIDTH = {"awd_lstm": (400, 1150, 3), "qrnn": (400, 1550, 4)}


def recurrent(arch: str, clip: str, widths, *extra):
    return ["--task", "awd_language_modeling", "--arch", arch, *widths, "--criterion", "awd_split_cross_entropy",
            "--optimizer", "nt_asgd", "--lr-scheduler", "awd_when", "--lr", "30", "--clip-norm", clip,
            "--batch-size", str(BATCH), "--bptt", str(BPTT), "--fixed-bptt", *extra]


def runs(recipe_widths: bool):
    widths = (lambda name: []) if recipe_widths else (lambda name: TINY[name])
    no_valid = ["--disable-validation"]
    return {
        "awd_lstm": ("fairseq", recurrent("awd_lstm", "0.25", widths("awd_lstm"), *no_valid)),
        "awd_lstm, averaging": ("fairseq", recurrent("awd_lstm", "0.25", widths("awd_lstm"), "--asgd-from-start")),
        "qrnn": ("fairseq", recurrent("qrnn", "0.2", widths("qrnn"), *no_valid)),
        "awd_lstm_mos": ("fairseq", recurrent("awd_lstm_mos", "0.25", widths("awd_lstm_mos"), *no_valid)),
        "bare loop, LSTM": ("bare", "lstm"),
        "bare loop, QRNN": ("bare", "qrnn"),
        "transformer_lm (fairseq's task)": ("fairseq", [
            "--task", "language_modeling", "--arch", "transformer_lm", "--decoder-layers", "2",
            "--decoder-embed-dim", "32", "--decoder-ffn-embed-dim", "64", "--decoder-attention-heads", "2",
            "--tokens-per-sample", str(BPTT), "--sample-break-mode", "none", "--batch-size", str(BATCH),
            "--criterion", "cross_entropy", "--optimizer", "sgd", "--lr", "1", "--clip-norm", "0.25", *no_valid]),
    }


def tiny_corpus(tmp: Path) -> Path:
    """The embedded WikiText-2's first 900 training lines (~45k tokens: more than N2 updates)."""
    import lzma

    from awd_fairseq.tools.data.prepare import binarize

    raw = tmp / "raw"
    raw.mkdir(parents=True)
    for split, lines in (("train", 900), ("valid", 40), ("test", 40)):
        with lzma.open(REPO / "data" / "wikitext-2" / f"{split}.txt.xz", "rt", encoding="utf-8") as f:
            text = "".join(line for _, line in zip(range(lines), f))
        (raw / f"{split}.txt").write_text(text, encoding="utf-8")
    binarize(raw, tmp / "bin")
    return tmp / "bin"


def fairseq_run(data: Path, flags, tmp: Path):
    def run(updates: int, counter) -> None:
        save_dir = tempfile.mkdtemp(dir=tmp)
        op_count.fairseq_train([
            data, *flags, "--user-dir", USER_DIR, "--cpu", "--num-workers", "0", "--seed", "1", "--no-save",
            "--save-dir", save_dir, "--max-update", updates, "--log-format", "simple", "--log-interval", "100000",
            "--no-progress-bar"])
    return run


def bare_run(data: Path, kind: str, recipe_widths: bool):
    from fairseq.data import Dictionary

    from awd_fairseq.tasks.token_stream import read_stream
    from awd_fairseq.tasks.bptt_dataset import batchify

    dictionary = Dictionary.load(str(data / "dict.txt"))
    stream = batchify(read_stream(str(data / "train"), dictionary), BATCH)  # (N, B)
    emsize, nhid, nlayers = RECIPE_WIDTH[kind] if recipe_widths else (32, 64, 3 if kind == "lstm" else 4)

    def run(updates: int, counter) -> None:
        torch.manual_seed(1)
        model = BareLM(len(dictionary), kind, emsize, nhid, nlayers, wdrop=0.5 if kind == "lstm" else 0.1,
                       dropouth=0.25 if kind == "lstm" else 0.3)
        data_on_device = stream.clone()
        counter.mark(data_on_device)
        trainer = BareTrainer(model, data_on_device, bptt=BPTT, clip=0.25 if kind == "lstm" else 0.2)
        for i in range(updates):
            trainer.train_step(i * BPTT, BPTT)
    return run


def summarize(per: dict) -> dict:
    ops, reads, copies = per["ops"], per["reads"], per["async_copies"]

    def total(counter, test=lambda label: True):
        return sum(v for k, v in counter.items() if test(k if isinstance(k, str) else k[0]))

    return {
        "ops": total(ops), "plugin ops": total(ops, lambda k: k.startswith("plugin:")),
        "fairseq ops": total(ops, lambda k: k.startswith("fairseq")), "backward ops": total(ops, lambda k: k == "backward"),
        "forget-mult ops": total(ops, lambda k: k == "plugin:modules/forget_mult.py"),
        "reads": total(reads), "plugin reads": total(reads, lambda k: k.startswith("plugin:")),
        "fairseq reads": total(reads, lambda k: k.startswith("fairseq") and k != "fairseq:logging/meters.py"),
        "meter reads": total(reads, lambda k: k == "fairseq:logging/meters.py"),
        "async copies": total(copies),
    }


COLUMNS = ["ops", "plugin ops", "forget-mult ops", "fairseq ops", "backward ops", "reads", "plugin reads", "fairseq reads", "meter reads",
           "async copies"]


def table(results: dict) -> str:
    head = "| per update | aten ops | of which plugin | (CPU forget-mult) | fairseq | backward | host reads | plugin | " \
           "fairseq trainer | fairseq meters | async copies |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for name, per in results.items():
        row = summarize(per)
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:g}" for c in COLUMNS) + " |")
    return "\n".join(lines)


def details(results: dict) -> str:
    out = []
    for name, per in results.items():
        out.append(f"\n{name}:")
        by_label = defaultdict(float)
        for label, n in per["ops"].items():
            by_label[label] += n
        for label, n in sorted(by_label.items(), key=lambda kv: -kv[1]):
            out.append(f"  {n:8.1f} ops  {label}")
        for (label, where), n in sorted(per["reads"].items(), key=lambda kv: -kv[1]):
            out.append(f"  {n:8.1f} read  {label}  {where}")
        for (label, where), n in sorted(per["async_copies"].items(), key=lambda kv: -kv[1]):
            out.append(f"  {n:8.1f} async copy  {label}  {where}")
    return "\n".join(out)


def main(args) -> str:
    torch.set_num_threads(1)
    n1, n2 = args.updates
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = Path(args.data) if args.data else tiny_corpus(tmp)
        results = {}
        for name, (kind, spec) in runs(args.recipe_widths).items():
            if args.runs and not any(name.startswith(r) for r in args.runs):
                continue
            logger.info("counting %s (%d and %d updates)", name, n1, n2)
            run = fairseq_run(data, spec, tmp) if kind == "fairseq" else bare_run(data, spec, args.recipe_widths)
            results[name] = op_count.per_update(run, n1, n2).per(n2 - n1)
    report = table(results)
    if args.detail:
        report += "\n" + details(results)
    return report


def cli_main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a binarized corpus (default: the embedded WikiText-2's first 900 lines)")
    parser.add_argument("--updates", type=int, nargs=2, default=[5, 15], metavar=("N1", "N2"),
                        help="the two run lengths; per update = difference / (N2 - N1)")
    parser.add_argument("--runs", nargs="*", help="only the runs whose names start with these")
    parser.add_argument("--recipe-widths", action="store_true", help="the recipes' widths instead of tiny ones")
    parser.add_argument("--detail", action="store_true", help="ops by file and every read's location")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(message)s", force=True)
    args = parser.parse_args()
    report = main(args)
    for name in ("fairseq", "fairseq_cli"):  # quiet again after fairseq-train's own logging setup
        logging.getLogger(name).setLevel(logging.WARNING)
    print(report)


if __name__ == "__main__":
    cli_main()
