"""Shared fixtures: a tiny offline BERT, the example corpus, a CLI runner in a temp working dir."""

from __future__ import annotations

import os
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
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

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
