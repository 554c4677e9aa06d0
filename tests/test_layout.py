"""The house rules of ../shared/ARCHITECTURE.md, checked: imports flow one way, rooms stay livable."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "optuna_seqclf"


def _name(path: Path) -> str:
    """``data.corpus`` for optuna_seqclf/data/corpus.py, ``data`` for its ``__init__``, ``__init__`` for the
    package's own."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, ast.Module]:
    return {_name(p): ast.parse(p.read_text(encoding="utf-8")) for p in sorted(PACKAGE.rglob("*.py"))}


def _our_imports(tree: ast.Module) -> list[tuple[str, list[str]]]:
    """(module, names) for every import of a module of ours, wherever it stands: top level, inside a
    function, or behind ``if TYPE_CHECKING``. ``from optuna_seqclf.report import plots`` names the module
    ``report.plots``."""
    names = set(_modules_cache())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, "imports inside the package are absolute (optuna_seqclf.…)"
            base = node.module or ""
            if base == "optuna_seqclf" or base.startswith("optuna_seqclf."):
                target = base.removeprefix("optuna_seqclf").lstrip(".") or "__init__"
                for alias in node.names:
                    sub = f"{target}.{alias.name}" if target != "__init__" else alias.name
                    found.append((sub, []) if sub in names else (target, [alias.name]))
        elif isinstance(node, ast.Import):
            found += [(a.name.removeprefix("optuna_seqclf."), []) for a in node.names
                      if a.name.startswith("optuna_seqclf.")]
    return found


_CACHE: dict[str, ast.Module] = {}


def _modules_cache() -> dict[str, ast.Module]:
    if not _CACHE:
        _CACHE.update(_modules())
    return _CACHE


def test_no_import_cycle_not_even_behind_type_checking() -> None:
    modules = _modules_cache()
    graph = {name: {target for target, _ in _our_imports(tree)} - {name} for name, tree in modules.items()}
    # The front doors re-export; nothing of ours imports the package's own.
    assert all("__init__" not in targets for name, targets in graph.items() if name != "__init__")
    graph.pop("__init__")
    graph.pop("cli")  # re-exports main for the console script; nothing of ours imports it
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


# The floors of the house, bottom up: a module imports only its own room and rooms on a lower floor; rooms
# on one floor do not import each other. A top-level module is a room of its own.
FLOORS: list[set[str]] = [
    {"errors"},
    {"settings", "hooks", "runtime", "interrupts", "summary"},
    {"data", "tracking"},
    {"training", "study"},
    {"predict"},
    {"tuning", "replicas"},
    {"pipeline"},
    {"report"},
    {"cli"},
    {"__init__", "__main__"},  # the front doors: the public API and `python -m`
]


def _room(module: str) -> str:
    return module.split(".")[0]


def _floor(room: str) -> int:
    return next(i for i, rooms in enumerate(FLOORS) if room in rooms)


def test_every_room_has_a_floor() -> None:
    rooms = {_room(name) for name in _modules_cache()}
    assert rooms == set().union(*FLOORS)


def test_no_room_imports_a_room_above_it_or_beside_it() -> None:
    """cli -> report -> pipeline -> {tuning, replicas} -> predict -> {training, study} -> {data, tracking} -> {settings,
    hooks, runtime, interrupts, summary} -> errors; imports behind ``TYPE_CHECKING`` and inside functions
    count."""
    upward = [f"{name} imports {target}" for name, tree in _modules_cache().items()
              for target, _ in _our_imports(tree)
              if _room(target) != _room(name) and _floor(_room(target)) >= _floor(_room(name))]
    assert upward == []


def test_the_layering_check_would_fail() -> None:
    """The rule above, on imports that break it: data reading from training, study from its neighbour."""
    for module, line in (("data.corpus", "from optuna_seqclf.training.loop import fine_tune"),
                         ("study.queue", "import optuna_seqclf.training.model")):
        [(target, _)] = _our_imports(ast.parse(line))
        assert _floor(_room(target)) >= _floor(_room(module))


def test_no_module_imports_a_private_name_of_another() -> None:
    private = [f"{name} imports {target}.{imported}" for name, tree in _modules_cache().items()
               for target, names in _our_imports(tree) for imported in names
               if imported.startswith("_") and target != name]
    assert private == []


def test_rooms_stay_livable() -> None:
    """Modules around 300 lines at most (a soft limit now that the rooms carry the structure: a few may pass
    it, none 400); functions mostly under 40 (none over 50)."""
    sizes = {_name(p): len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 400} == {}
    assert len({name for name, n in sizes.items() if n > 300}) <= 3
    lengths = {f"{name}.{node.name}": node.end_lineno - node.lineno + 1  # type: ignore[operator]
               for name, tree in _modules_cache().items() for node in ast.walk(tree)
               if isinstance(node, ast.FunctionDef)}
    assert {f: n for f, n in lengths.items() if n > 50} == {}
    assert sum(n <= 40 for n in lengths.values()) >= 0.97 * len(lengths)


def test_library_modules_leave_process_settings_to_runtime() -> None:
    """Only ``runtime`` sets threads, malloc options or library log levels; only the CLI calls it (the
    worker processes ``tune`` starts call it at their entry point)."""
    setters = ("set_num_threads", "mallopt", "set_verbosity", "disable_progress_bar", "setLevel", "set_device")
    offenders = [f"{name}: {node.attr}" for name, tree in _modules_cache().items() if name != "runtime"
                 for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr in setters]
    assert offenders == []
    callers = sorted(name for name, tree in _modules_cache().items() if any(
        target == "runtime" and "configure_process" in names for target, names in _our_imports(tree)))
    assert callers == ["__init__", "cli.commands", "cli.predict_command", "tuning.tune"]


def test_tests_mirror_the_package() -> None:
    """Every module with logic of its own has tests/<package>/test_<module>.py (end-to-end tests live in
    tests/e2e)."""
    covered_elsewhere = {"__init__", "__main__", "cli", "cli.commands", "cli.options", "hooks", "cli.console",
                         "report.dashboard", "report.plots", "report.markdown", "report.tables", "interrupts",
                         "errors", "training.prepared",
                         "training.replica_folder", "cli.predict_command", "study.steps", "study.schema",
                         "data", "training", "study", "tuning", "predict", "report",
                         "replicas", "tracking", "tracking.base", "tuning.lines"}  # through the CLI, in e2e
    missing = [name for name in sorted(_modules_cache()) if name not in covered_elsewhere
               and not (ROOT / "tests" / Path(*name.split(".")[:-1]) / f"test_{name.split('.')[-1]}.py").exists()]
    assert missing == []
    assert Path(ROOT / "tests" / "e2e").is_dir()


def test_each_tracker_is_imported_by_its_own_module_only() -> None:
    """Aim by ``tracking.aim_runs``, MLflow by ``tracking.mlflow_server`` and ``tracking.mlflow_runs``; nothing
    else of ours imports them (wherever the import stands)."""
    owners = {"aim": {"tracking.aim_runs"}, "mlflow": {"tracking.mlflow_server", "tracking.mlflow_runs"}}
    found: dict[str, set[str]] = {name: set() for name in owners}
    for module, tree in _modules_cache().items():
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for name in names:
                if name.split(".")[0] in found:
                    found[name.split(".")[0]].add(module)
    assert found == owners
