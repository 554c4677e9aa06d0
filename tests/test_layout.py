"""The house rules of ../shared/ARCHITECTURE.md, checked: imports flow one way, rooms stay livable."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "optuna_seqclf"


def _modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(encoding="utf-8")) for p in sorted(PACKAGE.glob("*.py"))}


def _our_imports(tree: ast.Module) -> list[tuple[str, list[str]]]:
    """(module, names) for every import of a module of ours, wherever it stands: top level, inside a
    function, or behind ``if TYPE_CHECKING``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level == 1:
                target = base.split(".")[0]
                found += [(target, [a.name for a in node.names])] if target else \
                    [(a.name, []) for a in node.names]  # from . import plots
            elif base.startswith("optuna_seqclf"):
                parts = base.split(".")
                found.append((parts[1] if len(parts) > 1 else "__init__", [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name.split(".")[1], []) for a in node.names if a.name.startswith("optuna_seqclf.")]
    return found


def test_no_import_cycle_not_even_behind_type_checking() -> None:
    graph = {name: {target for target, _ in _our_imports(tree)} - {name} for name, tree in _modules().items()}
    graph.pop("__init__")  # the package's front door re-exports; nothing of ours imports it
    assert all("__init__" not in targets for targets in graph.values())
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        assert name not in path, "import cycle: " + " -> ".join([*path[path.index(name):], name])
        if name in done:
            return
        for target in sorted(graph.get(name, ())):
            visit(target, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_no_module_imports_a_private_name_of_another() -> None:
    private = [f"{name} imports {target}.{imported}" for name, tree in _modules().items()
               for target, names in _our_imports(tree) for imported in names
               if imported.startswith("_") and target != name]
    assert private == []


def test_rooms_stay_livable() -> None:
    """Modules under ~300 lines; functions mostly under 40 (none over 50)."""
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.glob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 300} == {}
    lengths = {f"{name}.{node.name}": node.end_lineno - node.lineno + 1  # type: ignore[operator]
               for name, tree in _modules().items() for node in ast.walk(tree)
               if isinstance(node, ast.FunctionDef)}
    assert {f: n for f, n in lengths.items() if n > 50} == {}
    assert sum(n <= 40 for n in lengths.values()) >= 0.97 * len(lengths)


def test_library_modules_leave_process_settings_to_runtime() -> None:
    """Only ``runtime`` sets threads, malloc options or library log levels; only the CLI calls it (the
    worker processes ``tune`` starts call it at their entry point)."""
    setters = ("set_num_threads", "mallopt", "set_verbosity", "disable_progress_bar", "setLevel", "set_device")
    offenders = [f"{name}: {node.attr}" for name, tree in _modules().items() if name != "runtime"
                 for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr in setters]
    assert offenders == []
    callers = sorted(name for name, tree in _modules().items() if any(
        target == "runtime" and "configure_process" in names for target, names in _our_imports(tree)))
    assert callers == ["__init__", "cli", "cli_predict", "tuning"]


def test_tests_mirror_the_package() -> None:
    """Every module with logic of its own has tests/test_<module>.py (end-to-end tests live in tests/e2e)."""
    covered_elsewhere = {"__init__", "__main__", "cli", "cli_options", "hooks", "console", "dashboard", "plots",
                         "report", "tables", "interrupts", "errors", "objective", "pipeline",
                         "replicas", "inputs", "replica_files", "cli_predict"}  # through the CLI, in tests/e2e
    missing = [p.stem for p in sorted(PACKAGE.glob("*.py"))
               if p.stem not in covered_elsewhere and not (ROOT / "tests" / f"test_{p.stem}.py").exists()]
    assert missing == []
    assert Path(ROOT / "tests" / "e2e").is_dir()
