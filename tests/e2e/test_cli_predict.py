"""`predict` as a user runs it: a replicas folder (the ensemble) or one replica, files or stdin, and bad input."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import EXAMPLE_DATA, write_split
from optuna_seqclf.cli.commands import cli


@pytest.fixture(scope="module")
def replicas(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two replicas of a one-point study on the example corpus (module-scoped: train once)."""
    work = tmp_path_factory.mktemp("predict")
    old = Path.cwd()
    os.chdir(work)
    try:
        runner = CliRunner()
        result = runner.invoke(cli, ["run", str(EXAMPLE_DATA), "--model", str(tiny_model), "--batch-sizes", "8",
                                     "--learning-rates", "1e-3", "--epochs", "1", "--seeds", "1,2", "--no-track",
                                     "-o", "models"])
    finally:
        os.chdir(old)
    assert result.exit_code == 0, result.output
    assert re.search(r"\|\s+ensemble \|", result.output)  # train scores the seed ensemble under the per-seed rows
    return work / "models"


def _invoke(workdir: Path, *args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["predict", *args], input=stdin)


def test_train_wrote_the_ensemble_scores_that_predict_reproduces(replicas: Path) -> None:
    ensemble = json.loads((replicas / "ensemble_results.json").read_text())
    summary = json.loads((replicas / "replicas_summary.json").read_text())
    assert ensemble["seeds"] == [1, 2] and summary["ensemble"] == ensemble
    assert set(summary) >= {"mean", "std", "ci95"}
    # train scored the replicas it trained from their own evaluations; predict loads them back from disk
    for split in ("dev", "test"):
        result = _invoke(replicas, str(replicas), str(EXAMPLE_DATA / f"{split}.txt"), "-q")
        assert f"macro-F1 {ensemble[f'{split}_f1']:.4f}, micro-F1 {ensemble[f'{split}_micro_f1']:.4f}, " \
               f"accuracy {ensemble[f'{split}_accuracy']:.4f}" in result.stderr


def test_train_again_scores_the_reused_replicas_the_same(replicas: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = json.loads((replicas / "ensemble_results.json").read_text())
    monkeypatch.chdir(replicas.parent)
    study = next((replicas.parent / "studies").glob("*.db")).stem
    result = CliRunner().invoke(cli, ["train", "--study-name", study, "-o", "models", "--seeds", "1,2", "--no-track"])
    assert result.exit_code == 0, result.output
    assert "seed 1: bert-custom-model_sentiment_8_0.001_1_1 exists, reused" in result.output
    assert json.loads((replicas / "ensemble_results.json").read_text()) == before


def test_predict_with_the_ensemble_to_stdout_scores_a_labelled_input(workdir: Path, replicas: Path) -> None:
    result = _invoke(workdir, str(replicas), str(EXAMPLE_DATA / "test.txt"))
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert rows[0] == ["index", "label", "score"] and [r[0] for r in rows[1:]] == [str(i) for i in range(12)]
    assert {r[1] for r in rows[1:]} <= {"0", "1"} and all(0.5 <= float(r[2]) <= 1 for r in rows[1:])
    assert "Predicting with the ensemble of seeds 1,2" in result.stderr
    assert "12 labelled examples: macro-F1" in result.stderr  # scores stay off stdout, which is the TSV


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl"])
def test_output_format_follows_the_extension(workdir: Path, replicas: Path, suffix: str) -> None:
    out = workdir / f"pred{suffix}"
    result = _invoke(workdir, str(replicas), str(EXAMPLE_DATA / "test.txt"), "-o", str(out), "--probabilities",
                     "--metrics-json", str(workdir / "m.json"), "--confusion", "--replica", "2")
    assert result.exit_code == 0, result.output
    assert "Predicting with the replica of seed 2" in result.output and "predicted 0" in result.output
    if suffix == ".jsonl":
        records = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["index"] for r in records] == list(range(12))
        assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in records)
    else:
        rows = list(csv.reader(out.open(), delimiter="\t" if suffix == ".tsv" else ","))
        assert rows[0] == ["index", "label", "score", "p_0", "p_1"] and len(rows) == 13
    metrics = json.loads((workdir / "m.json").read_text())
    assert metrics["examples"] == 12 and sum(map(sum, metrics["confusion"])) == 12
    assert [p.name for p in workdir.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_plain_lines_from_stdin_keep_their_order(workdir: Path, replicas: Path) -> None:
    texts = ["a fine film", "", "dull and slow", "I liked it a lot"]
    result = _invoke(workdir, str(replicas / "bert-custom-model_sentiment_8_0.001_1_1"), "-", "--format", "lines",
                     "-q", stdin="\n".join(texts) + "\n")
    assert result.exit_code == 0, result.output
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["index", "0", "1", "2"]
    assert result.stderr == ""  # --quiet; no labels, so no scores


def test_empty_input_gives_an_empty_output_and_says_so(workdir: Path, replicas: Path) -> None:
    write_split(workdir, "empty", "sentence\tLabel\n")
    result = _invoke(workdir, str(replicas), str(workdir / "empty.txt"), "-o", str(workdir / "out.tsv"))
    assert result.exit_code == 0, result.output
    assert "no examples; the output is empty" in result.output
    assert (workdir / "out.tsv").read_text() == "index\tlabel\tscore\n"


def test_labels_the_model_does_not_know_are_counted_and_left_out(workdir: Path, replicas: Path) -> None:
    write_split(workdir, "odd", "sentence\tLabel\ngood film\t1\nbad film\t0\nweird film\tmaybe\n")
    result = _invoke(workdir, str(replicas), str(workdir / "odd.txt"), "-o", str(workdir / "o.tsv"))
    assert result.exit_code == 0, result.output
    assert "2 labelled examples" in result.output
    assert "1 example(s) have a label the model does not know (it knows 0, 1)" in result.output


@pytest.mark.parametrize(("case", "args", "says"), [
    ("bad line", ["BAD", "-o", "out.tsv"], "bad.txt:3: 1 tab-separated fields, but the header has 2"),
    ("no text column", ["GOOD", "--text-column", "review", "-o", "out.tsv"], "no column 'review' in the header"),
    ("missing folder", ["GOOD", "-o", "no/such/out.tsv"], "folder no/such does not exist"),
    ("bad extension", ["GOOD", "-o", "out.xlsx"], "use a .tsv, .csv or .jsonl file name"),
    ("no such replica", ["GOOD", "--replica", "7"], "no replica of seed 7 (seeds: 1,2)"),
    ("missing input", ["nope.txt"], "nope.txt: file not found"),
])
def test_bad_input_is_one_line_and_writes_nothing(workdir: Path, replicas: Path, case: str, args: list[str],
                                                  says: str) -> None:
    write_split(workdir, "bad", "sentence\tLabel\nfine\t1\nbroken line\n")
    write_split(workdir, "good", "sentence\tLabel\nfine\t1\n")
    args = [str(workdir / "bad.txt") if a == "BAD" else str(workdir / "good.txt") if a == "GOOD" else a for a in args]
    before = sorted(p.name for p in workdir.iterdir())
    result = _invoke(workdir, str(replicas), *args)
    assert result.exit_code in (1, 2), result.output
    assert says in result.output and "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("Error:")]) == 1
    assert sorted(p.name for p in workdir.iterdir()) == before


def test_a_half_written_replica_is_refused_by_name(workdir: Path, replicas: Path) -> None:
    broken = shutil.copytree(replicas, workdir / "models")
    (broken / "bert-custom-model_sentiment_8_0.001_1_2" / "all_results.json").unlink()
    result = _invoke(workdir, str(broken), str(EXAMPLE_DATA / "test.txt"))
    assert result.exit_code == 1
    assert "the replica of seed(s) 2 is missing or half-written" in result.output and "--replica SEED" in result.output
    assert _invoke(workdir, str(broken), str(EXAMPLE_DATA / "test.txt"), "--replica", "1").exit_code == 0


def test_an_interrupted_predict_leaves_no_output(workdir: Path, replicas: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna_seqclf.predict.files as files

    def dies(self, first_index, probs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(files._RowWriter, "rows", dies)
    result = _invoke(workdir, str(replicas), str(EXAMPLE_DATA / "test.txt"), "-o", str(workdir / "out.tsv"))
    assert result.exit_code == 130
    assert list(workdir.iterdir()) == []
