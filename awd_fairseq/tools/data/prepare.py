"""Prepare an awd-lstm-lm corpus as a fairseq ``data-bin`` folder.

Two steps: :func:`awd_fairseq.tools.data.sources.write_raw_splits` writes ``train/valid/test.txt``
exactly as awd-lstm-lm ``getdata.sh`` leaves them, then :func:`binarize` runs
``fairseq-preprocess --only-source --padding-factor 1`` on them.

Vocabulary mapping onto fairseq's :class:`~fairseq.data.Dictionary`: awd-lstm-lm ``data.py``
reads each line as ``line.split() + ['<eos>']``; fairseq's binarizer reads each line as the same
whitespace-split tokens followed by ``</s>``, so fairseq's ``</s>`` plays the original ``<eos>``.
PTB and WikiText already contain a literal ``<unk>`` token; fairseq's dictionary owns a
``<unk>`` symbol, so those occurrences land on the unk index instead of a second entry. With
padding factor 1 the dictionary is exactly the training types plus fairseq's four specials
(``<s>``, ``<pad>``, ``</s>``, ``<unk>``): PTB has 10,002 entries where awd-lstm-lm has
10,000, the two extra ones (``<s>``, ``<pad>``) never occurring as targets.

Own text (corpus ``custom``, or any corpus) can first be cut into sentencepiece pieces with
``spm_vocab_size``: the model is trained on ``train.txt`` and saved as ``<out>/spm.model``.
"""

import logging
import os
from pathlib import Path
from typing import Optional

from awd_fairseq.tools.data.sources import CORPORA, SPLITS, write_raw_splits

logger = logging.getLogger(__name__)

# The copy of WikiText-2 shipped with the repository (data/wikitext-2/*.txt.xz + SHA256SUMS).
EMBEDDED_WIKITEXT2 = Path(__file__).resolve().parents[3] / "data" / "wikitext-2"

_BINARIZED = [f"{s}.{ext}" for s in SPLITS for ext in ("bin", "idx")] + ["dict.txt", "preprocess.log"]


def check_utf8(path: Path, chunk_bytes: int = 1 << 24) -> None:
    """Raise ValueError naming the line and byte where ``path`` stops being UTF-8.

    fairseq-preprocess reads text as UTF-8 and would otherwise stop with a UnicodeDecodeError
    from one of its worker processes, without the file or the line. Empty lines are fine: each
    becomes one ``</s>``, as in the original's data.py.
    """
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(chunk_bytes), b""):
                decoder.decode(chunk)
        decoder.decode(b"", final=True)
        return
    except UnicodeDecodeError:
        pass
    # slow path, only for a bad file: a newline byte is never inside a UTF-8 sequence, so every
    # line decodes on its own
    with open(path, "rb") as f:
        offset = 0
        for number, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(
                    f"{path}: line {number} is not UTF-8 (byte 0x{line[e.start:e.start + 1].hex()} at column "
                    f"{e.start}, file offset {offset + e.start}): re-encode the file as UTF-8 "
                    "(e.g. iconv -f latin1 -t utf-8) before preparing it"
                ) from None
            offset += len(line)


def binarize(raw_dir: Path, dest_dir: Path, workers: int = 1) -> None:
    """Run this environment's ``fairseq-preprocess`` on ``raw_dir/{train,valid,test}.txt``.

    It runs in this process (importing fairseq once costs seconds). Importing
    ``fairseq_cli.preprocess`` calls ``logging.basicConfig`` as every fairseq command does
    (a no-op once logging is configured); the file handler its ``main`` attaches to
    write ``preprocess.log`` is detached afterwards.
    """
    from fairseq import options
    from fairseq_cli import preprocess

    for split in SPLITS:  # before anything in dest_dir is replaced
        check_utf8(raw_dir / f"{split}.txt")
    dest_dir.mkdir(parents=True, exist_ok=True)
    stale = [dest_dir / n for n in _BINARIZED if (dest_dir / n).exists()]
    if stale:  # fairseq-preprocess refuses to overwrite dict.txt
        logger.info("replacing the earlier binarization in %s", dest_dir)
        for path in stale:
            path.unlink()
    argv = ["--only-source"]
    for split in SPLITS:
        argv += [f"--{split}pref", str(raw_dir / f"{split}.txt")]
    argv += ["--destdir", str(dest_dir), "--workers", str(workers), "--padding-factor", "1"]
    logger.info("fairseq-preprocess %s", " ".join(argv))
    fairseq_logger = logging.getLogger(preprocess.logger.name)
    handlers_before = list(fairseq_logger.handlers)
    try:
        preprocess.main(options.get_preprocessing_parser().parse_args(argv))
    finally:
        for handler in [h for h in fairseq_logger.handlers if h not in handlers_before]:
            fairseq_logger.removeHandler(handler)
            handler.close()


def sentencepiece_encode(raw_dir: Path, out_dir: Path, vocab_size: int, encoded_dir: Path) -> Path:
    """Train sentencepiece on ``raw_dir/train.txt``; write the three splits as space-separated pieces.

    Returns the model path. Each line stays one line (an empty line stays empty, hence one
    ``</s>`` after binarization), so decoding the pieces of a line gives the line back up to
    sentencepiece's whitespace normalization.
    """
    import sentencepiece as spm  # optional dependency, only this route needs it

    prefix = out_dir / "spm"
    out_dir.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        input=str(raw_dir / "train.txt"),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        # bounded memory on large corpora: a random sample of lines is enough to learn pieces
        input_sentence_size=2_000_000,
        shuffle_input_sentence=True,
        minloglevel=1,
    )
    processor = spm.SentencePieceProcessor(model_file=f"{prefix}.model")
    encoded_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        with open(raw_dir / f"{split}.txt", encoding="utf-8", newline=None) as f_in, open(
            encoded_dir / f"{split}.txt", "w", encoding="utf-8"
        ) as f_out:
            for line in f_in:
                f_out.write(" ".join(processor.encode(line.rstrip("\n"), out_type=str)) + "\n")
    return Path(f"{prefix}.model")


def prepare_corpus(
    name: str,
    source: Optional[Path] = None,
    out_dir: Optional[Path] = None,
    raw_dir: Optional[Path] = None,
    workers: int = 1,
    spm_vocab_size: Optional[int] = None,
    num_test_bytes: int = 5_000_000,
    download: bool = False,
) -> Path:
    """Raw splits + binarization for one corpus; returns the data-bin folder.

    ``source``: a folder with ``train/valid/test.txt[.xz]``, an archive as ``getdata.sh``
    downloads it (or for ``enwik8`` the raw file), or None to use the embedded WikiText-2
    copy (``wikitext-2`` only, unless ``download``) or download the archive into
    ``out_dir/downloads``. ``raw_dir`` defaults to ``out_dir/raw``. ``num_test_bytes`` sizes
    enwik8's valid and test splits.
    """
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; choose from {sorted(CORPORA)}")
    out_dir = Path(out_dir if out_dir is not None else Path("data-bin") / name)
    raw_dir = Path(raw_dir if raw_dir is not None else out_dir / "raw")
    if source is None and not download and name == "wikitext-2" and EMBEDDED_WIKITEXT2.is_dir():
        source = EMBEDDED_WIKITEXT2
    write_raw_splits(name, source, raw_dir, out_dir / "downloads", num_test_bytes)
    text_dir = raw_dir
    if spm_vocab_size:
        for split in SPLITS:  # sentencepiece reads them as UTF-8 too
            check_utf8(raw_dir / f"{split}.txt")
        text_dir = raw_dir / "spm"
        model = sentencepiece_encode(raw_dir, out_dir, spm_vocab_size, text_dir)
        logger.info("sentencepiece model: %s", model)
    binarize(text_dir, out_dir, workers)
    logger.info("binarized %s into %s", name, out_dir)
    return out_dir


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))
