"""tools/cli.py: the fairseq command the scripts run, with and without fairseq's entry points."""
import importlib.util
import sys
from pathlib import Path

from awd_fairseq.tools import cli


def test_the_entry_point_beside_this_python_first(tmp_path, monkeypatch):
    (tmp_path / "fairseq-train").write_text("#!/bin/sh\n")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    assert cli.fairseq_command("fairseq-train") == [str(tmp_path / "fairseq-train")]


def test_without_entry_points_this_python_runs_the_fairseq_cli_module(tmp_path, monkeypatch):
    """A machine with fairseq on PYTHONPATH only (docs/gpu.md) runs `python -m fairseq_cli.*`."""
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert cli.fairseq_command("fairseq-eval-lm") == [str(tmp_path / "python"), "-m", "fairseq_cli.eval_lm"]
    assert cli.fairseq_command("fairseq-hydra-train")[-1] == "fairseq_cli.hydra_train"


def test_each_fallback_module_runs_as_a_script():
    """Each module is fairseq's and runs its tool under `python -m` (fairseq_cli's `__main__` guard)."""
    for name, module in cli.FAIRSEQ_MODULES.items():
        spec = importlib.util.find_spec(module)
        assert spec is not None, name
        assert 'if __name__ == "__main__":\n    cli_main()' in Path(spec.origin).read_text(), name
