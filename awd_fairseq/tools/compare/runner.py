"""Run one step of a long measurement (the comparison, the evaluation table): a fairseq command
with its log in a file, its wall time and peak memory measured and a progress bar while it runs,
or a function called in this process; either is reused when it already finished with the same
command or arguments (its `.done.json` / result file)."""
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from .. import fairseq_logs

logger = logging.getLogger(__name__)


def run_step(label: str, cmd: List[str], log_path: Path, on_poll: Optional[Callable[[Path], None]] = None,
             poll_seconds: float = 2.0, cwd: Optional[Path] = None) -> Dict:
    """Run `cmd` (stdout and stderr to `log_path`, in `cwd`) unless `<log>.done.json` records the same command.
    Returns {"command", "seconds", "peak_rss_mib", "started", "reused"}; raises if the command fails."""
    done = log_path.with_suffix(".done.json")
    cmd = [str(c) for c in cmd]
    if done.exists():
        previous = json.loads(done.read_text())
        if previous.get("command") == cmd:
            logger.info("%s: reusing the finished run in %s", label, log_path.parent)
            return dict(previous, reused=True)
        logger.info("%s: the command changed since the run in %s; running again", label, log_path.parent)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logger.info("%s: %s", label, " ".join(cmd))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    started = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        while True:
            # wait4: this child's own resource usage (ru_maxrss = its peak resident memory)
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if on_poll is not None:
                on_poll(log_path)
            time.sleep(poll_seconds)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if on_poll is not None:
        on_poll(log_path)
    if proc.returncode != 0:
        tail = "".join(log_path.read_text(errors="replace").splitlines(True)[-30:])
        raise RuntimeError(f"{label} failed (exit {proc.returncode}); its log is {log_path}:\n{tail}")
    result = {"command": cmd, "seconds": time.time() - started, "peak_rss_mib": usage.ru_maxrss / 1024,
              "started": started}
    done.write_text(json.dumps(result, indent=1))
    return dict(result, reused=False)


def reuse_or_call(label: str, key: Dict, path: Path, fn: Callable[[], Dict]) -> Dict:
    """`fn()`, timed, written to `path` (JSON) together with `key`; a later call with the same key
    reads it back instead. `key` names everything the result depends on (JSON-serialisable)."""
    key = json.loads(json.dumps(key))
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            logger.info("%s: reusing the finished run in %s", label, path)
            return saved["result"]
        logger.info("%s: its arguments changed since %s; running again", label, path)
    logger.info("%s", label)
    started = time.time()
    result = fn()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "seconds": time.time() - started, "result": result}, indent=1))
    return result


class TrainProgress:
    """A progress bar over a training budget (updates or seconds), fed by fairseq's train_inner
    and valid records as they appear in the log."""

    def __init__(self, label: str, max_updates: Optional[int], max_seconds: Optional[float], enabled: bool = True):
        from tqdm import tqdm

        self.by_updates = max_updates is not None
        total = max_updates if self.by_updates else max_seconds
        self.bar = tqdm(total=total, desc=label, unit="upd" if self.by_updates else "s", file=sys.stderr,
                        disable=not enabled, dynamic_ncols=True, leave=True)
        self.started = time.time()

    def __call__(self, log_path: Path) -> None:
        inner = fairseq_logs.train_inner(log_path) if log_path.exists() else []
        valid = fairseq_logs.valid(log_path) if log_path.exists() else []
        position = inner[-1].get("num_updates", 0) if inner and self.by_updates else time.time() - self.started
        if not self.by_updates:
            position = min(position, self.bar.total or position)
        self.bar.n = int(position)
        postfix = {}
        if inner:
            postfix["loss"] = inner[-1].get("loss")
        if valid:
            postfix["valid"] = valid[-1].get("loss")
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
