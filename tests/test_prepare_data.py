"""Data preparation: raw splits as awd-lstm-lm getdata.sh leaves them, binarized by fairseq-preprocess.

References are independent of the code under test: awd-lstm-lm ``data.py`` reads a split as
``line.split() + ['<eos>']`` per line, and ``prep_enwik8.py`` writes a split as
``' '.join(str(c) if c != 10 else '\\n' for c in part)``.
"""

import dataclasses
import hashlib
import io
import lzma
import random
import runpy
import tarfile
import zipfile
from pathlib import Path

import pytest

from awd_fairseq.tools.data import sources
from awd_fairseq.tools.data.prepare import EMBEDDED_WIKITEXT2, prepare_corpus
from awd_fairseq.tools.data.sources import SPLITS, write_raw_splits

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = next(
    (p for p in (REPO / "shared" / "data", REPO.parent / "shared" / "data") if (p / "SHA256SUMS").is_file()),
    None,
)
needs_shared_data = pytest.mark.skipif(SHARED_DATA is None, reason="shared/data benchmark files not present")


def head_lines(path: Path, n: int, skip: int = 0) -> bytes:
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rb") as f:
        lines = f.readlines()
    return b"".join(lines[skip : skip + n])


def awd_tokens(text: str):
    """awd-lstm-lm data.py tokenization, with fairseq's name for the end-of-line token."""
    tokens = []
    for line in io.StringIO(text):
        tokens += line.split() + ["</s>"]
    return tokens


def binarized_lines(data_bin: Path, split: str):
    """Each stored sentence of ``data_bin/split`` as a list of dictionary symbols."""
    from fairseq.data import Dictionary, data_utils

    dictionary = Dictionary.load(str(data_bin / "dict.txt"))
    dataset = data_utils.load_indexed_dataset(str(data_bin / split), dictionary)
    return [[dictionary[i] for i in dataset[k].tolist()] for k in range(len(dataset))], dictionary


def check_word_level(data_bin: Path, folder: Path):
    """The binarized stream is data.py's token stream; types unseen in train (slices have some) are <unk>."""
    train_types = set(awd_tokens((folder / "train.txt").read_text(encoding="utf-8")))
    for split in SPLITS:
        lines, dictionary = binarized_lines(data_bin, split)
        reference = awd_tokens((folder / f"{split}.txt").read_text(encoding="utf-8"))
        assert [t for line in lines for t in line] == [t if t in train_types else "<unk>" for t in reference]
        assert all(line[-1] == "</s>" for line in lines)
    specials = {"<s>", "<pad>", "</s>", "<unk>"}
    assert set(dictionary.symbols) == train_types | specials  # padding factor 1: nothing added
    assert len(dictionary) == len(dictionary.symbols) == len(train_types | specials)


def write_slices(source: Path, target: Path, n: int) -> Path:
    target.mkdir(parents=True)
    for split in SPLITS:
        path = source / f"{split}.txt"
        path = path if path.exists() else source / f"{split}.txt.xz"
        (target / f"{split}.txt").write_bytes(head_lines(path, n))
    return target


@needs_shared_data
def test_ptb_folder_through_cli(tmp_path):
    folder = write_slices(SHARED_DATA / "ptb", tmp_path / "ptb", 200)
    out = tmp_path / "bin"
    cli = runpy.run_path(str(REPO / "scripts" / "prepare_data.py"))  # in process: fairseq imports once
    cli["cli_main"](["ptb", "--from", str(folder), "--out", str(out), "--workers", "2"])
    for split in SPLITS:
        assert (out / "raw" / f"{split}.txt").read_bytes() == (folder / f"{split}.txt").read_bytes()
    check_word_level(out, folder)
    _, dictionary = binarized_lines(out, "train")
    assert "<unk>" in (folder / "train.txt").read_text().split()
    assert dictionary.index("<unk>") == dictionary.unk()  # the corpus' <unk> is fairseq's unk


def test_wikitext2_slice_from_xz_folder(tmp_path):
    """Non-ASCII text, blank lines, and the .txt.xz folder route, from the embedded copy."""
    folder = tmp_path / "wt2"
    folder.mkdir()
    sums = []
    for split in SPLITS:
        text = head_lines(EMBEDDED_WIKITEXT2 / f"{split}.txt.xz", 150)
        (folder / f"{split}.txt.xz").write_bytes(lzma.compress(text))
        sums.append(f"{hashlib.sha256(text).hexdigest()}  {split}.txt\n")
    (folder / "SHA256SUMS").write_text("".join(sums))
    out = prepare_corpus("wikitext-2", source=folder, out_dir=tmp_path / "bin")
    assert any(ord(c) > 127 for c in (out / "raw" / "train.txt").read_text(encoding="utf-8"))
    check_word_level(out, out / "raw")
    for split in SPLITS:
        assert (out / "raw" / f"{split}.txt").read_bytes() == lzma.decompress((folder / f"{split}.txt.xz").read_bytes())


def test_folder_checksum_mismatch_is_an_error(tmp_path):
    for split in SPLITS:
        (tmp_path / f"{split}.txt").write_text(" a b \n")
    (tmp_path / "SHA256SUMS").write_text("0" * 64 + "  train.txt\n")
    with pytest.raises(ValueError, match="SHA256"):
        write_raw_splits("custom", tmp_path, tmp_path / "raw", tmp_path / "cache")


def enwik8_stand_in(size=3000, seed=0) -> bytes:
    rng = random.Random(seed)
    data = bytearray(range(256))  # every byte value occurs in train, so none decodes to <unk>
    data += "<page>Zürich – ünïcödé\n\n  text\n".encode("utf-8")
    while len(data) < size:
        data += bytes(rng.choice([10, 32, rng.randrange(256)]) for _ in range(50))
    return bytes(data[:size]) + b"end"  # the last split does not end in a newline


def test_enwik8_from_zip(tmp_path):
    data, num_test = enwik8_stand_in(), 700
    archive = tmp_path / "enwik8.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("enwik8", data)
    out = prepare_corpus("enwik8", source=archive, out_dir=tmp_path / "bin", num_test_bytes=num_test)
    parts = {"train": data[: -2 * num_test], "valid": data[-2 * num_test : -num_test], "test": data[-num_test:]}
    assert [len(parts[s]) for s in SPLITS] == [len(data) - 2 * num_test, num_test, num_test]
    for split, part in parts.items():
        reference = " ".join([str(c) if c != 10 else "\n" for c in part])  # prep_enwik8.py
        assert (out / "raw" / f"{split}.txt").read_text(encoding="ascii") == reference
        lines, _ = binarized_lines(out, split)
        decoded = b"".join(bytes(int(t) for t in line[:-1]) + b"\n" for line in lines)
        assert decoded == part + (b"" if part.endswith(b"\n") else b"\n")
    # the raw enwik8 file (not zipped) gives the same splits
    (tmp_path / "enwik8").write_bytes(data)
    write_raw_splits("enwik8", tmp_path / "enwik8", tmp_path / "raw2", tmp_path, num_test)
    for split in SPLITS:
        assert (tmp_path / "raw2" / f"{split}.txt").read_bytes() == (out / "raw" / f"{split}.txt").read_bytes()


def split_texts():
    return {s: f" = {s} heading = \n \n the {s} text , with <unk> \n".encode() for s in SPLITS}


def test_wikitext103_zip_via_download_route(tmp_path, monkeypatch):
    """The archive layout of wikitext-103-v1.zip, fetched through the download code with a file:// URL."""
    texts = split_texts()
    archive = tmp_path / "served" / "wikitext-103-v1.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("wikitext-103/", "")
        for split, text in texts.items():
            z.writestr(f"wikitext-103/wiki.{split}.tokens", text)
    spec = dataclasses.replace(sources.CORPORA["wikitext-103"], urls=(archive.as_uri(),))
    monkeypatch.setitem(sources.CORPORA, "wikitext-103", spec)
    write_raw_splits("wikitext-103", None, tmp_path / "raw", tmp_path / "cache")
    assert (tmp_path / "cache" / "wikitext-103-v1.zip").read_bytes() == archive.read_bytes()
    for split, text in texts.items():
        assert (tmp_path / "raw" / f"{split}.txt").read_bytes() == text


@pytest.mark.parametrize("prefix", ["", "./"])
@pytest.mark.parametrize("corpus,member", [("ptb", "ptb.{}.txt"), ("pennchar", "ptb.char.{}.txt")])
def test_simple_examples_tgz(tmp_path, corpus, member, prefix):
    texts = {s: split_texts()[s] + corpus.encode() for s in SPLITS}
    archive = tmp_path / "simple-examples.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for split in SPLITS:  # both corpora live in the one archive
            for name, text in ((f"ptb.{split}.txt", texts[split] + b"w"), (f"ptb.char.{split}.txt", texts[split] + b"c")):
                info = tarfile.TarInfo(f"{prefix}simple-examples/data/{name}")
                info.size = len(text)
                tar.addfile(info, io.BytesIO(text))
    write_raw_splits(corpus, archive, tmp_path / "raw", tmp_path / "cache")
    suffix = b"c" if corpus == "pennchar" else b"w"
    for split in SPLITS:
        assert (tmp_path / "raw" / f"{split}.txt").read_bytes() == texts[split] + suffix


@needs_shared_data
def test_sentencepiece_route(tmp_path):
    pytest.importorskip("sentencepiece")
    folder = tmp_path / "own"
    folder.mkdir()
    (folder / "train.txt").write_bytes(head_lines(SHARED_DATA / "ptb" / "train.txt", 400))
    for split in ("valid", "test"):  # lines seen in training, so no piece falls outside the dictionary
        (folder / f"{split}.txt").write_bytes(head_lines(SHARED_DATA / "ptb" / "train.txt", 60, skip=100))
    out = prepare_corpus("custom", source=folder, out_dir=tmp_path / "bin", spm_vocab_size=300)
    assert (out / "spm.model").is_file()
    for split in SPLITS:
        lines, dictionary = binarized_lines(out, split)
        original = (folder / f"{split}.txt").read_text().splitlines()
        assert len(lines) == len(original)
        assert all(line[-1] == "</s>" and "<unk>" not in line[:-1] for line in lines)
        rejoined = ["".join(line[:-1]).replace("\u2581", " ").strip() for line in lines]
        assert rejoined == [" ".join(line.split()) for line in original]


def test_embedded_wikitext2_matches_its_sums():
    sums = dict(line.split()[::-1] for line in (EMBEDDED_WIKITEXT2 / "SHA256SUMS").read_text().splitlines())
    readme = (EMBEDDED_WIKITEXT2 / "README.md").read_text()
    assert sorted(sums) == [f"{s}.txt" for s in sorted(SPLITS)]
    for name, digest in sums.items():
        assert hashlib.sha256(lzma.decompress((EMBEDDED_WIKITEXT2 / f"{name}.xz").read_bytes())).hexdigest() == digest
        assert digest in readme
    if SHARED_DATA is not None:
        shared = dict(line.split()[::-1] for line in (SHARED_DATA / "SHA256SUMS").read_text().splitlines())
        assert all(shared[f"wikitext-2/{name}"] == digest for name, digest in sums.items())
