"""Checkpoint files that a killed fairseq-train never leaves half-written.

fairseq's `checkpoint_utils.save_checkpoint` writes the first file of a save (`checkpoint<E>.pt`,
`checkpoint_<E>_<U>.pt`, or `checkpoint_best.pt` / `checkpoint_last.pt` when it is the only one)
atomically: `torch_persistent_save` writes `<name>.tmp` and renames it. The other files of the
same save, `checkpoint_best.pt` and `checkpoint_last.pt` most of the time, are then made with
`PathManager.copy`, i.e. `shutil.copyfile`, which writes the destination in place: a SIGKILL (an
out-of-memory kill, a preempted job) during that copy leaves a truncated `checkpoint_last.pt`,
and the restarted run fails to load it ("failed finding central directory").

`install()`, called by the training task's `setup_task` (the one place it acts; it replaces
`PathManager.copy` for the whole process and logs that once), makes those copies atomic for local paths: the copy goes to `<dst>.tmp`, which then
replaces `<dst>` with `os.replace` (a rename, atomic on POSIX file systems). Paths handled by an
iopath handler (remote storage) keep fairseq's own copy. A leftover `<name>.tmp` after a kill is
harmless: the next save overwrites it. Durability against power loss (fsync) is not attempted.
"""
import logging
import os
import shutil

logger = logging.getLogger(__name__)


def atomic_copy(src: str, dst: str) -> bool:
    """Copy `src` over `dst` so that `dst` is always either its old content or a whole copy."""
    tmp = f"{dst}.tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return True


def install() -> None:
    """Route fairseq's `PathManager.copy` through `atomic_copy` for local paths (idempotent)."""
    from fairseq.file_io import PathManager

    fairseq_copy = PathManager.copy
    if getattr(fairseq_copy, "awd_atomic", False):
        return

    def copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
        remote = PathManager.path_requires_pathmanager(src_path) or PathManager.path_requires_pathmanager(dst_path)
        if remote or not overwrite:  # checkpoint_utils always overwrites
            return fairseq_copy(src_path, dst_path, overwrite)
        return atomic_copy(src_path, dst_path)

    copy.awd_atomic = True
    copy.fairseq_copy = fairseq_copy  # what it replaced
    PathManager.copy = staticmethod(copy)
    logger.info("checkpoint copies made atomic: fairseq's PathManager.copy goes through a tmp file and os.replace "
                "for local paths (awd_fairseq.atomic_checkpoints)")
