"""The atomic checkpoint copies (awd_fairseq/atomic_checkpoints.py) against fairseq's own copy:
a copy that dies half-way leaves fairseq's destination truncated and ours untouched."""
import shutil

import pytest
from fairseq.file_io import PathManager

from awd_fairseq import atomic_checkpoints


class Killed(Exception):
    pass


def dying_copyfileobj(src, dst, length=0):
    """shutil's block copy, killed after the first 10 bytes."""
    dst.write(src.read(10))
    dst.flush()
    raise Killed()


@pytest.fixture
def files(tmp_path, monkeypatch):
    src, dst = tmp_path / "checkpoint1.pt", tmp_path / "checkpoint_last.pt"
    src.write_bytes(b"N" * 1000)
    dst.write_bytes(b"O" * 1000)
    monkeypatch.setattr(shutil, "copyfileobj", dying_copyfileobj)
    monkeypatch.setattr(shutil, "_fastcopy_sendfile", None, raising=False)  # no kernel shortcut on Linux
    monkeypatch.setattr(shutil, "_USE_CP_SENDFILE", False, raising=False)
    return src, dst


def test_without_it_a_killed_copy_truncates_the_checkpoint(files, monkeypatch):
    src, dst = files
    # fairseq's own copy, whether or not a task set up earlier in this process replaced it
    monkeypatch.setattr(PathManager, "copy", staticmethod(getattr(PathManager.copy, "fairseq_copy", PathManager.copy)))
    with pytest.raises(Killed):
        PathManager.copy(str(src), str(dst), overwrite=True)
    assert dst.read_bytes() == b"N" * 10  # fairseq's copy wrote in place: the old checkpoint is gone


def test_with_it_a_killed_copy_leaves_the_old_checkpoint_whole(files, monkeypatch):
    src, dst = files
    monkeypatch.setattr(PathManager, "copy", PathManager.copy)
    atomic_checkpoints.install()
    assert PathManager.copy.awd_atomic
    with pytest.raises(Killed):
        PathManager.copy(str(src), str(dst), overwrite=True)
    assert dst.read_bytes() == b"O" * 1000
    monkeypatch.undo()
    atomic_checkpoints.atomic_copy(str(src), str(dst))  # and a copy that finishes replaces it whole
    assert dst.read_bytes() == b"N" * 1000
