"""``predict`` over files: read examples in chunks, predict, write rows in input order, score when labelled.

Memory does not grow with the input: examples are read, tokenised and predicted a chunk at a time, rows
go straight to the output, and scores accumulate in a confusion matrix. The input is read once first
to check every line (stdin is spooled to a temporary file for that), so a bad line late in a file
writes nothing; a file output is written to a temporary file and renamed when complete.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import numpy as np

from optuna_seqclf.data.records import Columns, Example, Label
from optuna_seqclf.data.text_formats import format_of, numbered_lines, read_examples
from optuna_seqclf.errors import ConfigError, DataError, OutputError
from optuna_seqclf.predict.predictor import Evaluation, Predictor, Tally
from optuna_seqclf.training.replica_folder import prediction_lines

FORMATS = ("auto", "tsv", "csv", "jsonl", "parquet", "lines")
OUTPUT_FORMATS = {".tsv": "tsv", ".txt": "tsv", ".csv": "csv", ".jsonl": "jsonl"}
CHUNK = 8192  # examples per chunk: big enough for long length-sorted batches, small in memory


@dataclass(frozen=True)
class InputSpec:
    """Where the examples are (``None``: stdin) and how to read them.

    ``tsv``, ``csv``, ``jsonl``, ``parquet``: read as ``tune`` reads a split (the text column found in any
    case); the label column is used when the file has it. ``lines``: one text per line, blank lines skipped.
    ``auto``: from the file's extension (``.csv``, ``.jsonl``, ``.parquet``; anything else, and stdin, TSV).
    """

    path: Path | None
    format: str = "auto"
    text_column: str = "sentence"
    label_column: str = "Label"
    text_pair_column: str | None = None
    # a multi-label model's labels in a TSV/CSV label column, or in the wide layout (as ``tune`` reads them)
    label_separator: str = ","
    label_columns: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"--format {self.format!r}: use one of {', '.join(FORMATS)}")

    @property
    def input_format(self) -> str:
        """The format read: ``format``, or for ``auto`` the one the extension names (TSV by default)."""
        if self.format != "auto":
            return self.format
        return (format_of(self.path) if self.path is not None else None) or "tsv"

    @property
    def name(self) -> str:
        return "<stdin>" if self.path is None else str(self.path)


@dataclass
class Chunk:
    texts: list[str]
    pairs: list[str] | None
    labels: list[Label] | None


@dataclass(frozen=True)
class FilePrediction:
    examples: int
    output: Path | None  # None: written to the stream given
    evaluation: Evaluation | None  # when the input has the label column


def output_format(output: Path | None) -> str:
    """The output's format from its extension (stdout: tsv); a ConfigError for any other extension."""
    if output is None:
        return "tsv"
    fmt = OUTPUT_FORMATS.get(output.suffix.lower())
    if fmt is None:
        raise ConfigError(f"-o {output}: use a .tsv, .csv or .jsonl file name (the extension picks the format)")
    return fmt


def check_output(output: Path | None) -> None:
    """Refuse, before any work, an output of another format, or whose folder is missing or cannot be written."""
    if output is not None:
        output_format(output)
        check_writable_file(output)


def check_writable_file(path: Path) -> None:
    """Refuse a file path that is a folder, or whose folder is missing or cannot be written."""
    folder = path.parent
    if not folder.is_dir():
        raise OutputError(f"{path}: folder {folder} does not exist")
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: folder {folder} is not writable")


def write_metrics(path: Path, evaluation: Evaluation) -> None:
    """The scores (and the confusion matrix, single-label) as JSON, written under a temporary name and renamed."""
    payload = {**evaluation.metrics, "examples": evaluation.examples, "unknown_labels": evaluation.unknown,
               "labels": list(evaluation.labels), "task": evaluation.task}
    if evaluation.task == "single-label":
        payload["confusion"] = [list(row) for row in evaluation.confusion]
    with _atomic_output(path, None) as fh:
        fh.write(json.dumps(payload, indent=2) + "\n")


def predict_file(predictor: Predictor, source: InputSpec, output: Path | None = None, *,
                 stream: TextIO | None = None, probabilities: bool = False, batch_size: int | None = None,
                 chunk_size: int = CHUNK, on_progress: Callable[[int], None] | None = None) -> FilePrediction:
    """Predict every example of ``source`` into ``output`` (or ``stream`` when there is no output file)."""
    check_output(output)
    fmt = output_format(output)
    with _checked_input(source, predictor.task) as path:
        tally, done, has_labels = Tally(predictor), 0, False
        with _atomic_output(output, stream) as out:
            writer = _RowWriter(out, fmt, predictor, probabilities)
            for chunk in read_chunks(path, source, chunk_size, task=predictor.task):
                probs = predictor.predict_proba(chunk.texts, chunk.pairs, batch_size)
                writer.rows(done, probs)
                if chunk.labels is not None:
                    has_labels = True
                    tally.add(probs, chunk.labels)
                done += len(chunk.texts)
                if on_progress is not None:
                    on_progress(done)
    return FilePrediction(done, output, tally.evaluation() if has_labels else None)


# --- reading -----------------------------------------------------------------------------------

@contextlib.contextmanager
def _checked_input(source: InputSpec, task: str) -> Iterator[Path]:
    """The input's path after every line was checked (labels as ``task`` reads them); stdin is spooled to a
    temporary file first."""
    if source.path is not None:
        if not source.path.is_file():
            raise DataError(f"{source.path}: {'is a folder' if source.path.is_dir() else 'file not found'}")
        for _ in read_chunks(source.path, source, CHUNK, check_only=True, task=task):
            pass
        yield source.path
        return
    with tempfile.NamedTemporaryFile(prefix="seqclf-stdin-", delete=False) as spool:
        shutil.copyfileobj(sys.stdin.buffer, spool)
    try:
        for _ in read_chunks(Path(spool.name), source, CHUNK, check_only=True, task=task):
            pass
        yield Path(spool.name)
    finally:
        os.unlink(spool.name)


def read_chunks(path: Path, source: InputSpec, chunk_size: int, check_only: bool = False,
                task: str = "single-label") -> Iterator[Chunk]:
    """The examples of ``path`` in chunks of ``chunk_size``, checked one by one (file:line or row errors), their
    labels (when the file has them) read as the model's ``task`` reads them."""
    columns = Columns(source.text_column, source.label_column, source.text_pair_column, label_required=False,
                      task=task, label_separator=source.label_separator, label_columns=source.label_columns)
    with path.open("rb") as fh:
        examples = _plain_lines(fh, source.name) if source.input_format == "lines" else \
            read_examples(fh, source.input_format, source.name, columns, empty_ok=True)
        chunk = Chunk([], [] if source.text_pair_column else None, None)
        for example in examples:
            if check_only:
                continue
            chunk.texts.append(example.text)
            if chunk.pairs is not None and example.pair is not None:
                chunk.pairs.append(example.pair)
            if example.label is not None:
                chunk.labels = chunk.labels if chunk.labels is not None else []
                chunk.labels.append(example.label)
            if len(chunk.texts) == chunk_size:
                yield chunk
                chunk = Chunk([], [] if source.text_pair_column else None, None)
        if chunk.texts:
            yield chunk


def _plain_lines(fh: BinaryIO, name: str) -> Iterator[Example]:
    """One example per non-blank line, the whole line its text."""
    for number, line in numbered_lines(fh, name):
        if line.strip():
            yield Example(number, line.strip(), None, None)


# --- writing -----------------------------------------------------------------------------------

@contextlib.contextmanager
def _atomic_output(output: Path | None, stream: TextIO | None) -> Iterator[TextIO]:
    """``output`` written under a temporary name and renamed when complete (removed on any error)."""
    if output is None:
        yield stream if stream is not None else sys.stdout
        return
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            yield fh
        os.replace(tmp, output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{output}: cannot be written ({exc.strerror or exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class _RowWriter:
    """One row per example, as TSV, CSV or JSON lines, as the model's task says: ``index, label, score`` (the
    class and its probability); ``index, labels`` (the labels predicted, joined by commas); ``index, score``
    (regression). With ``probabilities``, one more column per class or label: its probability."""

    def __init__(self, out: TextIO, fmt: str, predictor: Predictor, probabilities: bool) -> None:
        self.out, self.fmt, self.predictor = out, fmt, predictor
        self.labels, self.task = predictor.labels, predictor.task
        self.probabilities = probabilities and self.task != "regression"
        kind = {"single-label": ["label", "score"], "multi-label": ["labels"], "regression": ["score"]}[self.task]
        header = ["index", *kind, *(f"p_{name}" for name in self.labels if self.probabilities)]
        if fmt == "tsv":
            out.write("\t".join(header) + "\n")
        elif fmt == "csv":
            csv.writer(out, lineterminator="\n").writerow(header)

    def rows(self, first_index: int, probs: np.ndarray) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n") if self.fmt == "csv" else None
        decided = self.predictor.decide(probs)
        # the class, the labels joined by commas, the score: as a replica's test_predictions.txt has them
        lines = prediction_lines(self.task, decided, self.labels)
        for offset, (line, choice, row) in enumerate(zip(lines, decided, probs)):
            index = first_index + offset
            if self.fmt == "jsonl":
                buffer.write(json.dumps(self._record(index, line, choice, row), ensure_ascii=False) + "\n")
                continue
            chosen = [f"{row[int(choice)]:.6f}"] if self.task == "single-label" else []  # the class's probability
            cells = [str(index), line, *chosen, *(f"{p:.6f}" for p in row if self.probabilities)]
            if writer is not None:
                writer.writerow(cells)
            else:
                buffer.write("\t".join(cells) + "\n")
        self.out.write(buffer.getvalue())

    def _record(self, index: int, line: str, choice: Any, row: np.ndarray) -> dict[str, object]:
        """A JSON line: the class and its probability; the labels and theirs; the score."""
        record: dict[str, object] = {"index": index}
        if self.task == "regression":
            record["score"] = round(float(choice), 6)
        elif self.task == "multi-label":
            chosen = [i for i, on in enumerate(choice) if on]
            record.update(labels=[self.labels[i] for i in chosen], scores=[round(float(row[i]), 6) for i in chosen])
        else:
            record.update(label=line, score=round(float(row[int(choice)]), 6))
        if self.probabilities:
            record["probabilities"] = {name: round(float(p), 6) for name, p in zip(self.labels, row)}
        return record
