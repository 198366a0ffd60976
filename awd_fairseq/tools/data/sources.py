"""Where the five awd-lstm-lm corpora come from, and how they become raw train/valid/test.txt.

Follows salesforce/awd-lstm-lm ``getdata.sh``: the files it renames are copied byte for byte
(``ptb``, ``pennchar``, ``wikitext-2``, ``wikitext-103``), and ``enwik8`` is converted exactly as
its ``data/enwik8/prep_enwik8.py`` does (see :func:`write_enwik8_splits`).

A source is a folder holding ``{train,valid,test}.txt`` (or ``.txt.xz``, checked against a
``SHA256SUMS`` file beside them when there is one), a local copy of the archive ``getdata.sh``
downloads, or, when none is given, that archive downloaded once into a cache folder.
"""

import logging
import lzma
import shutil
import tarfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple

from awd_fairseq.files import sha256_of

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")

_PTB_URLS = ("http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz",)
# The S3 bucket used by getdata.sh answers 403 today; Stephen Merity's mirror serves the same zips.
_WIKITEXT_URLS = (
    "https://wikitext.smerity.com/{}",
    "https://s3.amazonaws.com/research.metamind.io/wikitext/{}",
)


@dataclass(frozen=True)
class CorpusSpec:
    archive: str  # file name of the archive getdata.sh downloads
    urls: Tuple[str, ...]  # mirrors, tried in order
    members: Dict[str, str] = field(default_factory=dict)  # split -> path inside the archive
    # SHA256 of the standard raw splits, for a log line saying whether the result is the reference
    sha256: Dict[str, str] = field(default_factory=dict)


def _wikitext(archive: str, folder: str, sha256=None) -> CorpusSpec:
    return CorpusSpec(
        archive=archive,
        urls=tuple(u.format(archive) for u in _WIKITEXT_URLS),
        members={s: f"{folder}/wiki.{s}.tokens" for s in SPLITS},
        sha256=sha256 or {},
    )


CORPORA: Dict[str, CorpusSpec] = {
    "ptb": CorpusSpec(
        "simple-examples.tgz",
        _PTB_URLS,
        {s: f"simple-examples/data/ptb.{s}.txt" for s in SPLITS},
        {
            "train": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
            "valid": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
            "test": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
        },
    ),
    "pennchar": CorpusSpec(
        "simple-examples.tgz",
        _PTB_URLS,
        {s: f"simple-examples/data/ptb.char.{s}.txt" for s in SPLITS},
        {
            "train": "e313d91425e06c4f0a8fb6e881dcce0c291f2a0e9f4dda54833069b122f91da9",
            "valid": "21661f63ec355085879458b6524644d4add5573541b4be14fb52ab2e2e995eb8",
            "test": "1ef5607ac3c463b16e38bfe7900dd3bfc91de5a96e0f21e7eab5188b465b8ebe",
        },
    ),
    "wikitext-2": _wikitext(
        "wikitext-2-v1.zip",
        "wikitext-2",
        {
            "train": "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
            "valid": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
            "test": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
        },
    ),
    "wikitext-103": _wikitext("wikitext-103-v1.zip", "wikitext-103"),
    "enwik8": CorpusSpec("enwik8.zip", ("http://mattmahoney.net/dc/enwik8.zip",), {"all": "enwik8"}),
    "custom": CorpusSpec("", ()),  # the user's own train/valid/test.txt, only from a folder
}


def download(spec: CorpusSpec, cache_dir: Path) -> Path:
    """Fetch ``spec.archive`` into ``cache_dir`` (kept for later runs) and return its path."""
    target = Path(cache_dir) / spec.archive
    if target.is_file():
        logger.info("using cached %s", target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    for url in spec.urls:
        logger.info("downloading %s", url)
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
        except OSError as err:
            logger.warning("download from %s failed: %s", url, err)
            continue
        partial.replace(target)
        return target
    raise RuntimeError(f"could not download {spec.archive} from any of {spec.urls}")


def _split_file(folder: Path, split: str) -> Optional[Path]:
    for name in (f"{split}.txt", f"{split}.txt.xz"):
        if (folder / name).is_file():
            return folder / name
    return None


def copy_split_folder(folder: Path, raw_dir: Path) -> None:
    """Copy ``folder/{split}.txt[.xz]`` to ``raw_dir/{split}.txt``; verify ``folder/SHA256SUMS``."""
    sums = {}
    if (folder / "SHA256SUMS").is_file():
        for line in (folder / "SHA256SUMS").read_text().splitlines():
            if line.strip():
                digest, name = line.split(maxsplit=1)
                sums[name.lstrip("*")] = digest
    for split in SPLITS:
        source, target = _split_file(folder, split), raw_dir / f"{split}.txt"
        opener = lzma.open if source.suffix == ".xz" else open
        with opener(source, "rb") as f_in, open(target, "wb") as f_out:
            shutil.copyfileobj(f_in, f_out, 1 << 20)
        expected = sums.get(target.name)
        if expected is not None and sha256_of(target) != expected:
            raise ValueError(f"{source}: SHA256 of the decompressed text differs from {folder}/SHA256SUMS")
    if sums:
        logger.info("%s: SHA256SUMS verified", folder)


def _find_member(names, wanted: str) -> str:
    """Exact archive path, else the one member whose base name matches (tolerates ./ or a renamed top folder)."""
    stripped = {n[2:] if n.startswith("./") else n: n for n in names}
    if wanted in stripped:
        return stripped[wanted]
    base = wanted.rsplit("/", 1)[-1]
    hits = [n for n in names if n.rsplit("/", 1)[-1] == base]
    if len(hits) != 1:
        raise KeyError(f"archive has {len(hits)} members named {base!r}, expected one")
    return hits[0]


def read_archive_members(archive: Path, members: Dict[str, str]) -> Dict[str, bytes]:
    """The bytes of each wanted member of a zip or tar(.gz) archive, by key."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            names = z.namelist()
            return {key: z.read(_find_member(names, path)) for key, path in members.items()}
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive, "r:*") as t:
            names = [m.name for m in t.getmembers() if m.isfile()]
            return {key: t.extractfile(_find_member(names, path)).read() for key, path in members.items()}
    raise ValueError(f"{archive} is neither a zip nor a tar archive")


def write_enwik8_splits(data: bytes, raw_dir: Path, num_test_bytes: int = 5_000_000) -> None:
    """Split and tokenize enwik8 as awd-lstm-lm ``prep_enwik8.py``.

    The last ``2 * num_test_bytes`` bytes become valid then test, the rest train. Each byte is
    written as its decimal value, joined by single spaces, except byte 10 which is written as a
    line break, so the line-level reader (awd-lstm-lm ``data.py`` or fairseq) turns every newline
    byte into an end-of-sentence token. A split that does not end in byte 10 still gets one
    end-of-sentence token after its last line, as in the original.
    """
    if not 0 < 2 * num_test_bytes < len(data):
        raise ValueError(f"cannot take 2 x {num_test_bytes} test bytes from {len(data)} bytes")
    parts = {
        "train": data[: -2 * num_test_bytes],
        "valid": data[-2 * num_test_bytes : -num_test_bytes],
        "test": data[-num_test_bytes:],
    }
    table = [str(b) for b in range(256)]
    table[10] = "\n"
    chunk = 1 << 20
    for split, part in parts.items():
        logger.info("enwik8 %s: %d bytes", split, len(part))
        with open(raw_dir / f"{split}.txt", "w", encoding="ascii", newline="") as out:
            for start in range(0, len(part), chunk):
                if start:
                    out.write(" ")
                out.write(" ".join(map(table.__getitem__, part[start : start + chunk])))


def write_raw_splits(
    name: str,
    source: Optional[Path],
    raw_dir: Path,
    cache_dir: Path,
    num_test_bytes: int = 5_000_000,
) -> None:
    """Produce ``raw_dir/{train,valid,test}.txt`` for corpus ``name`` from ``source`` (or a download)."""
    spec = CORPORA[name]
    if source is None:
        if not spec.urls:
            raise ValueError(f"corpus {name!r} has no download; pass a folder with train/valid/test.txt")
        source = download(spec, cache_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    source = Path(source)
    if source.is_dir():
        if all(_split_file(source, s) for s in SPLITS):
            copy_split_folder(source, raw_dir)
            _log_reference_match(spec, raw_dir)
            return
        if not (spec.archive and (source / spec.archive).is_file()):
            raise FileNotFoundError(f"{source} holds neither train/valid/test.txt nor {spec.archive or 'an archive'}")
        source = source / spec.archive
    if not source.is_file():
        raise FileNotFoundError(source)
    if name == "enwik8":
        is_zip = zipfile.is_zipfile(source)
        data = read_archive_members(source, spec.members)["all"] if is_zip else source.read_bytes()
        write_enwik8_splits(data, raw_dir, num_test_bytes)
        return
    if not spec.members:
        raise ValueError(f"corpus {name!r} is read from a folder, not from {source}")
    for split, text in read_archive_members(source, spec.members).items():
        (raw_dir / f"{split}.txt").write_bytes(text)
    _log_reference_match(spec, raw_dir)


def _log_reference_match(spec: CorpusSpec, raw_dir: Path) -> None:
    for split, expected in spec.sha256.items():
        if sha256_of(raw_dir / f"{split}.txt") == expected:
            logger.info("%s.txt is byte-identical to the reference", split)
        else:
            logger.warning("%s.txt differs from the reference file (SHA256 mismatch)", split)
