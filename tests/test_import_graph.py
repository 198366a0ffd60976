"""The house rules of docs/architecture.md, read from the code's import statements: the plugin
imports no tool, its modules/ import no fairseq, scripts import the package and never each other."""
import ast
from pathlib import Path

from helpers import REPO

PACKAGE = REPO / "awd_fairseq"


def imported_modules(path: Path):
    """Every module `path` imports, relative imports resolved to absolute names."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def python_files(folder: Path):
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_resolver_reads_relative_imports():
    names = set(imported_modules(PACKAGE / "tasks" / "dynamic_eval_lm.py"))
    assert {"awd_fairseq.files.sha256_of", "awd_fairseq.models.stream_scorer", "awd_fairseq.tasks.cache_pointer_lm",
            "fairseq.tasks.register_task"} <= names


def test_the_plugin_imports_no_tool():
    plugin = [p for p in python_files(PACKAGE) if "tools" not in p.relative_to(PACKAGE).parts]
    assert len(plugin) > 30
    offenders = {str(p.relative_to(REPO)): m for p in plugin for m in imported_modules(p)
                 if m == "awd_fairseq.tools" or m.startswith("awd_fairseq.tools.")}
    assert not offenders


def test_modules_are_plain_torch():
    offenders = {str(p.relative_to(REPO)): m for p in python_files(PACKAGE / "modules") for m in imported_modules(p)
                 if m.split(".")[0] == "fairseq" or m.startswith(("awd_fairseq.tasks", "awd_fairseq.models"))}
    assert not offenders


def script_paths_in_code(path: Path):
    """String constants naming a `.py` file, outside help texts and docstrings."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    prose = {id(k.value) for node in ast.walk(tree) if isinstance(node, ast.Call) for k in node.keywords
             if k.arg == "help"}
    prose |= {id(node.body[0].value) for node in ast.walk(tree)
              if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(node) is not None}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in prose and n.value.strip().endswith(".py")]


def test_scripts_import_the_package_not_each_other():
    scripts = python_files(REPO / "scripts")
    names = {p.stem for p in scripts}
    for path in scripts:
        modules = set(imported_modules(path))
        assert not {m.split(".")[0] for m in modules} & names, path  # no `import other_script`
        assert "sys.path" not in path.read_text(encoding="utf-8"), path
        called = [s for s in script_paths_in_code(path) if Path(s.strip()).stem in names - {path.stem}]
        assert not called, (path, called)  # nor another script run as a subprocess
