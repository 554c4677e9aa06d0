"""Each input format through the CLI as a user runs it: tune, train, predict; same answers as the TSV corpus."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import EXAMPLE_DATA, convert_corpus
from optuna_seqclf.cli.commands import cli

TUNE = ("--batch-sizes", "8", "--learning-rates", "1e-3,1e-4", "--epochs", "1", "--no-track", "--quiet")


def _best_f1(output: str) -> str:
    found = re.search(r"^Best F1 is (\S+)$", output, flags=re.M)
    assert found, output
    return found.group(1)


def _tune(data: Path, model: Path, name: str, *extra: str) -> str:
    result = CliRunner().invoke(cli, ["tune", str(data), "--model", str(model), "--study-name", name, *TUNE, *extra])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def tsv_f1(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    import os

    old = Path.cwd()
    os.chdir(tmp_path_factory.mktemp("tsv"))
    try:
        return _best_f1(_tune(EXAMPLE_DATA, tiny_model, "tsv"))
    finally:
        os.chdir(old)


@pytest.mark.parametrize(("fmt", "dev_name"), [("parquet", "validation")])
def test_format_end_to_end(fmt: str, dev_name: str, workdir: Path, tiny_model: Path, tsv_f1: str) -> None:
    """One format through every command; CSV, JSON Lines and saved datasets read exactly as the TSV at the
    reader level (tests/data/test_split_files.py), so they would give the same trials here."""
    data = convert_corpus(EXAMPLE_DATA, workdir / "data", fmt, dev_name=dev_name)
    assert _best_f1(_tune(data, tiny_model, fmt)) == tsv_f1  # the same examples, the same trials
    trained = CliRunner().invoke(cli, ["train", "--study-name", fmt, "--output-dir", "out", "--seeds", "1",
                                       "--no-track", "--quiet"])
    assert trained.exit_code == 0, trained.output
    replica = next(p for p in (workdir / "out").iterdir() if p.is_dir() and p.name.endswith("_1"))
    results = json.loads((replica / "eval_results.json").read_text())
    assert 0.0 <= results["eval_f1"] <= 1.0
    assert set(results["eval_f1_per_class"]) == {"0", "1"}  # each class's F1, by label name
    assert 0.0 <= results["eval_mcc"] <= 1.0 or results["eval_mcc"] < 0
    if fmt != "saved":
        test_file = data / f"test.{fmt}"
        predicted = CliRunner().invoke(cli, ["predict", str(replica), str(test_file), "-o", "pred.jsonl"])
        assert predicted.exit_code == 0, predicted.output
        assert "12 labelled examples" in predicted.output
        assert len((workdir / "pred.jsonl").read_text().splitlines()) == 12


def test_changed_data_refuses_to_resume(workdir: Path, tiny_model: Path) -> None:
    data = convert_corpus(EXAMPLE_DATA, workdir / "data", "parquet")
    _tune(data, tiny_model, "p", "--learning-rates", "1e-3")
    convert_corpus(EXAMPLE_DATA, workdir / "other", "parquet", dev_name="validation")
    (data / "train.parquet").write_bytes((workdir / "other" / "train.parquet").read_bytes()[:-8] + b"garbage!")
    result = CliRunner().invoke(cli, ["tune", str(data), "--model", str(tiny_model), "--study-name", "p", *TUNE])
    assert result.exit_code == 1 and "not a Parquet file" in result.output
    # A real change of content: one more training example
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(workdir / "other" / "train.parquet")
    pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), data / "train.parquet")
    result = CliRunner().invoke(cli, ["tune", str(data), "--model", str(tiny_model), "--study-name", "p", *TUNE,
                                      "--learning-rates", "1e-3"])
    assert result.exit_code != 0
    assert "data" in result.output.lower() and "changed" in result.output.lower(), result.output
