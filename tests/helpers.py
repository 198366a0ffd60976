"""What the tests share besides fixtures: the repository's paths, small corpora cut from the
embedded WikiText-2 (and from real PTB where ../shared has it), tiny model flags, and runners and
log readers for the fairseq tools."""
import io
import lzma
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = next((p for p in (REPO / "shared" / "data", REPO.parent / "shared" / "data") if p.is_dir()), None)
USER_DIR = str(REPO / "awd_fairseq")


def head_lines(path: Path, n: int, skip: int = 0) -> str:
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return "".join(f.readlines()[skip : skip + n])


# PTB for the tests that want its sentence-per-line shape: ../shared/data/ptb where present (CI),
# else (a user's clone, or AWD_TEST_STANDIN=1) a stand-in cut from the embedded WikiText-2.
PTB = None if os.environ.get("AWD_TEST_STANDIN") or SHARED_DATA is None else SHARED_DATA / "ptb"


def _ptb_like(sentence: str) -> str:
    """PTB's conventions on a WikiText sentence: numbers read N, punctuation (with WikiText's
    @-@ @,@ @.@) is dropped."""
    words = []
    for token in sentence.split():
        if re.fullmatch(r"[0-9][0-9.,]*", token):
            if not words or words[-1] != "N":
                words.append("N")
        elif token == "<unk>" or any(c.isalnum() for c in token):
            words.append(token)
    return " ".join(words)


def _standin_lines(split: str):
    """WikiText-2 made PTB-like: lower-cased, one sentence a line, PTB's numbers and punctuation,
    headings and empty lines dropped."""
    with lzma.open(REPO / "data" / "wikitext-2" / f"{split}.txt.xz", "rt", encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("="):
                sentences = (_ptb_like(s) for s in re.split(r"(?<= \.) ", line.lower()))
                yield from (s for s in sentences if s)


def ptb_lines(split: str, n: int) -> str:
    """The first n lines of PTB's `split` (train / valid / test), or of its stand-in."""
    if PTB is not None:
        return head_lines(PTB / f"{split}.txt", n)
    return "".join(f" {s} \n" for s, _ in zip(_standin_lines(split), range(n)))  # PTB's spacing


def make_data_bin(tmp: Path, splits: dict) -> Path:
    from awd_fairseq.tools.data.prepare import binarize

    raw = tmp / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, text in splits.items():
        (raw / f"{split}.txt").write_text(text, encoding="utf-8")
    binarize(raw, tmp / "bin", workers=1)
    return tmp / "bin"


def make_short_splits_bin(tmp: Path) -> Path:
    """The embedded WikiText-2's first 500 training lines with 12-line valid and test splits
    (about 100 segments of 5 each): the dynamic-evaluation tests' corpus."""
    src = REPO / "data" / "wikitext-2"
    return make_data_bin(tmp, {"train": head_lines(src / "train.txt.xz", 500), "valid": head_lines(src / "valid.txt.xz", 12),
                               "test": head_lines(src / "test.txt.xz", 12)})


TINY_MODEL = ["--emsize", "32", "--nhid", "64", "--nlayers", "2"]
# a small awd_lstm_mos for the end-to-end tests (the architecture's defaults are the PTB recipe's)
TINY_MOS = ["--emsize", "16", "--nhid", "24", "--nhidlast", "20", "--n-experts", "3"]


def run_fairseq(
    tool: str, args, check: bool = True, threads=None, cwd=None, merge_output: bool = False
) -> subprocess.CompletedProcess:
    """Run fairseq_cli.<tool> in a subprocess with our --user-dir; returns the completed process.
    `threads` sets OMP_NUM_THREADS (default: the environment's, else 2); `merge_output` sends
    stderr into `.stdout`, in the order it was written (one log to read)."""
    cmd = [sys.executable, "-m", f"fairseq_cli.{tool}", *map(str, args), "--user-dir", USER_DIR, "--cpu"]
    threads = threads if threads is not None else os.environ.get("OMP_NUM_THREADS", "2")
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(threads))
    streams = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT) if merge_output else dict(capture_output=True)
    proc = subprocess.run(cmd, text=True, env=env, cwd=cwd, **streams)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}\nexit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def train_args(data_bin, save_dir, *extra):
    return [
        data_bin, "--task", "awd_language_modeling", "--arch", "awd_lstm", *TINY_MODEL,
        "--criterion", "awd_split_cross_entropy", "--optimizer", "nt_asgd", "--lr", "30", "--clip-norm", "0.25",
        "--batch-size", "10", "--bptt", "20", "--seed", "1", "--save-dir", save_dir,
        "--log-format", "simple", "--log-interval", "10", "--no-progress-bar", *extra,
    ]


def valid_losses(out: str):
    """Base-2 validation losses fairseq-train logged, one per validation: its `--log-format json`
    records (read by awd_fairseq.tools.fairseq_logs), else the "valid on 'valid' subset | loss" lines of
    the `simple` format (train_args' format)."""
    from awd_fairseq.tools import fairseq_logs

    records = fairseq_logs.valid(out)
    if records:
        return [r["loss"] for r in records]
    return [float(loss) for _epoch, loss in _VALID_SIMPLE.findall(out)]


def valid_losses_by_epoch(out: str):
    """{epoch: the last validation loss logged in that epoch} from the `simple` format."""
    return {int(epoch): float(loss) for epoch, loss in _VALID_SIMPLE.findall(out) if epoch}


_VALID_SIMPLE = re.compile(r"(?:epoch (\d+) \| )?valid on 'valid' subset \| loss ([0-9.]+)")


def eval_lm_loss(out: str) -> float:
    """fairseq-eval-lm's closing "Loss (base 2)" (printed to 4 decimals)."""
    from awd_fairseq.tools import fairseq_logs

    return fairseq_logs.eval_lm_summary(out).loss_base2


def last_line(proc: subprocess.CompletedProcess) -> str:
    """The last line a failed tool printed: where the plugin's errors name the flag or file."""
    return (proc.stderr or proc.stdout).strip().splitlines()[-1]


def saved_and_loaded(obj):
    """`obj` through torch.save and torch.load(weights_only=True), as a checkpoint carries it."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)
