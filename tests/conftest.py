"""Shared fixtures: a tiny offline BERT, the example corpus, a CLI runner in a temp working dir."""

from __future__ import annotations

import gc
import glob
import importlib.util
import os
import pwd
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from optuna_seqclf import DataSpec, MachineSettings, TrainSettings, prepare
from tiny_model import build_tiny_bert

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_DATA = ROOT / "examples" / "data" / "sentiment"
SHARED_DATA = ROOT.parent / "shared" / "data"
SST2_2K = SHARED_DATA / "sst2-2k"
CPU = MachineSettings(device="cpu")  # the CPU paths, on any machine
# The command line with the scripted trainer (tests/scripted_cli.py), for subprocess tests of the protocol
SCRIPTED_CLI = [sys.executable, str(ROOT / "tests" / "scripted_cli.py")]
# The reference's job, two flags away from the defaults: every point for all its epochs, the single seed's
# choice. Tests whose claims count each grid point COMPLETE once (workers, kills, reconnects) run it.
REFERENCE_JOB = ("--pruner", "none", "--confirm-top", "0")

# The suite's own process trains in-process too: leave the heavy imports out of the garbage collection
# Optuna runs after every trial, as the command line does (runtime.freeze_imported_objects).
import torch  # noqa: E402
from transformers import AutoModelForSequenceClassification  # noqa: E402

gc.collect()
gc.freeze()

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _texts(path: Path) -> list[str]:
    return [line.split("\t")[0] for line in path.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random BERT with a WordPiece vocabulary learnt from the example and SST-2 sentences."""
    corpus = _texts(EXAMPLE_DATA / "train.txt")
    if (SST2_2K / "train.txt").exists():
        corpus += _texts(SST2_2K / "train.txt")
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), corpus, vocab_size=2000)


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run each test from its own empty folder, so studies/ and logs/ land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


def write_split(folder: Path, name: str, text: str | bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.txt"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def write_corpus(folder: Path, train: str, dev: str | None = None, test: str | None = None) -> Path:
    write_split(folder, "train", train)
    write_split(folder, "dev", dev if dev is not None else train)
    write_split(folder, "test", test if test is not None else train)
    return folder


@pytest.fixture(scope="module")
def sst2(tiny_model: Path):  # type: ignore[no-untyped-def]
    """The tiny model's settings, SST-2 2k prepared for it, and its splits tokenised to 64 tokens."""
    settings = TrainSettings(model=str(tiny_model), epochs=1)
    prepared = prepare(DataSpec(SST2_2K), settings, CPU)
    return settings, prepared, prepared.encoded(64)


TEXTS = [line.split("\t")[0] for line in (EXAMPLE_DATA / "train.txt").read_text(encoding="utf-8").splitlines()[1:]
         if line.strip()]


def _classifier(tiny_model: Path, folder: Path, seed: int) -> Path:
    """A random 3-class classifier on the tiny BERT, saved as a replica would be."""
    from transformers import AutoTokenizer

    torch.manual_seed(seed)
    labels = {0: "neg", 1: "neu", 2: "pos"}
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_model, num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()})
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def classifiers(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    base = tmp_path_factory.mktemp("classifiers")
    return [_classifier(tiny_model, base / f"seed{seed}", seed) for seed in (1, 2, 3)]


@pytest.fixture(scope="session")
def learnable(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data folder, model): a corpus the tiny BERT learns (the label is one word, ``great`` or ``awful``, among
    filler words) and a tiny BERT with its vocabulary. Unlike SST-2 with the tiny model, its runs do not fail:
    dev F1 1.0 after 8 epochs at learning rates 3e-3 and 1e-2 (tried with seeds 1-3)."""
    import random

    rng = random.Random(0)
    filler = ["the", "a", "movie", "film", "plot", "actor", "scene", "story", "was", "is", "very", "quite",
              "and", "but", "so", "it", "this", "that"]

    def line() -> tuple[str, int]:
        label = int(rng.random() < 0.5)
        words = [*rng.sample(filler, 5), "great" if label else "awful"]
        rng.shuffle(words)
        return " ".join(words), label

    base = tmp_path_factory.mktemp("learnable")
    data = base / "data"
    for name, n in (("train", 160), ("dev", 60), ("test", 60)):
        write_split(data, name, "sentence\tLabel\n" + "".join(f"{t}\t{y}\n" for t, y in (line() for _ in range(n))))
    return data, build_tiny_bert(base / "model", [line()[0] for _ in range(300)], vocab_size=100)


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThrowawayPostgres:
    """A PostgreSQL cluster on 127.0.0.1 in a temporary folder (as user `nobody` when the tests run as root),
    which a test may stop, start and restart."""

    def __init__(self, max_connections: int = 100) -> None:
        bindir = _pg_bin()
        if bindir is None:
            pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) not found; install Debian's postgresql package")
        self.bindir, self.base = bindir, Path(tempfile.mkdtemp(prefix="seqclf-pg-"))
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("nobody")
            os.chown(self.base, user.pw_uid, user.pw_gid)
            self.prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
        self.port, self.data = free_port(), self.base / "data"
        self.options = (f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
                        f"-c max_connections={max_connections}")
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()
        self._pg("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "seqclf")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/seqclf"

    def _pg(self, tool: str, *args: str) -> None:
        subprocess.run([*self.prefix, str(self.bindir / tool), *args], check=True, capture_output=True, timeout=120,
                       env={**os.environ, "HOME": str(self.base)})

    def start(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.base / "server.log"), "-w", "-o", self.options,
                 "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def close(self) -> None:
        subprocess.run([*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server shared by the tests that only need a database."""
    server = ThrowawayPostgres()
    try:
        yield server.url
    finally:
        server.close()


def states(db: Path) -> list[str]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return [row[0] for row in con.execute("SELECT state FROM trials ORDER BY number")]
    except sqlite3.OperationalError:  # tables not created yet
        return []


def wait_for(cond, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def convert_corpus(source: Path, target: Path, fmt: str, dev_name: str = "dev") -> Path:
    """The TSV corpus in ``source`` written to ``target`` the way Hugging Face users write it: ``datasets``'
    ``to_csv``/``to_json(lines=True)``/``to_parquet`` per split, or one ``DatasetDict.save_to_disk`` (``saved``).
    Labels become integers when every label is a whole number (as ``datasets`` would store them)."""
    import datasets

    def rows(split: str) -> dict[str, list[object]]:
        lines = (source / f"{split}.txt").read_text(encoding="utf-8").splitlines()
        header, body = lines[0].split("\t"), [line.split("\t") for line in lines[1:] if line.strip()]
        columns: dict[str, list[object]] = {name: [row[i] for row in body] for i, name in enumerate(header)}
        for name, values in columns.items():
            if name.lower() == "label" and all(str(v).isdigit() for v in values):
                columns[name] = [int(str(v)) for v in values]
        return columns

    names = {"train": "train", "dev": dev_name, "test": "test"}
    parts = {names[split]: datasets.Dataset.from_dict(rows(split)) for split in ("train", "dev", "test")}
    if fmt == "saved":
        datasets.DatasetDict(parts).save_to_disk(str(target))
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        if fmt == "csv":
            part.to_csv(str(target / f"{name}.csv"), index=False)
        elif fmt == "jsonl":
            part.to_json(str(target / f"{name}.jsonl"), lines=True, force_ascii=False)
        else:
            part.to_parquet(str(target / f"{name}.parquet"))
    return target


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (the default, ``-n auto`` in pyproject.toml), the slow tests go first, the type checker
    first of all, so that the workers share out the long tests and end together (every worker sorts the same
    way: xdist needs the same order everywhere). Run in one process (``-n 0``), the type checker starts at once,
    beside the tests that wait on subprocesses and sleeps; tests/test_lint.py reads its result."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: (item.name != "test_mypy_clean", item.get_closest_marker("slow") is None))
        return
    if any(item.name == "test_mypy_clean" for item in items) and importlib.util.find_spec("mypy") is not None:
        session.config.stash[MYPY] = subprocess.Popen([sys.executable, "-m", "mypy"], cwd=ROOT,
                                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: a worker per core, at most 4 (the slow tests start processes of their own)."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


MYPY = pytest.StashKey[subprocess.Popen[str]]()
