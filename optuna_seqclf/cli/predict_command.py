"""The ``predict`` command: labels for new text from a replica, any HF classifier, or the seed ensemble."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from optuna_seqclf.cli.console import Console
from optuna_seqclf.cli.options import config_option, data_options, fail_cleanly, label_layout_options
from optuna_seqclf.predict.files import (
    FORMATS,
    InputSpec,
    check_output,
    check_writable_file,
    predict_file,
    write_metrics,
)
from optuna_seqclf.predict.predictor import EVALUATION_METRICS, Evaluation, Predictor
from optuna_seqclf.report.tables import confusion_table
from optuna_seqclf.runtime import configure_process
from optuna_seqclf.settings import PRECISIONS, MachineSettings


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("input_path", metavar="INPUT")
@click.option("--output", "-o", default=None, type=click.Path(path_type=Path),
              help="Predictions file: .tsv, .csv or .jsonl (default: TSV on stdout).")
@click.option("--replica", default=None, type=int, help="With a replicas folder: this seed's replica alone.")
@click.option("--format", "input_format", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="INPUT's format: tsv, csv, jsonl, parquet (read as `tune` reads a split) or lines (plain text, "
                   "one example per line); auto: from the extension (.csv, .jsonl, .parquet; otherwise, and for "
                   "stdin, TSV).")
@data_options
@label_layout_options
@click.option("--probabilities", is_flag=True, help="One more column per class or label: its probability.")
@click.option("--confusion", is_flag=True, help="With a label column (single-label): print the confusion matrix too.")
@click.option("--metrics-json", default=None, type=click.Path(path_type=Path),
              help="With a label column: write the scores here (macro-F1, micro-F1, accuracy and the confusion "
                   "matrix; the multi-label and regression metrics for those models).")
@click.option("--batch-size", default=128, show_default=True, type=int, help="Examples per forward pass.")
@click.option("--max-seq-length", default=None, type=int,
              help="Longer texts are truncated (default: the length the model was trained with).")
@click.option("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda if available).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True, help="Autocast.")
@click.option("--threads", default=None, type=int, help="CPU threads for torch (default: the cores available).")
@click.option("--quiet", "-q", is_flag=True, help="Print only the results.")
@config_option
@fail_cleanly
def predict(model: Path, input_path: str, output: Path | None, replica: int | None, input_format: str,
            text_column: str, label_column: str, text_pair_column: str | None, label_separator: str,
            label_columns: tuple[str, ...] | None, probabilities: bool,
            confusion: bool, metrics_json: Path | None, batch_size: int, max_seq_length: int | None,
            device: str | None, precision: str, threads: int | None, quiet: bool) -> None:
    """Predict labels for INPUT (a file, or - for stdin) with MODEL: a replica or any Hugging Face
    sequence-classification folder, or a replicas folder written by `train` (its seed ensemble). Multi-label
    models give the labels predicted, regression models the score."""
    source = InputSpec(None if input_path == "-" else Path(input_path), input_format, text_column, label_column,
                       text_pair_column, label_separator, label_columns)
    check_output(output)
    if metrics_json is not None:
        check_writable_file(metrics_json)
    machine = MachineSettings(device=device, precision=precision, eval_batch_size=batch_size, threads=threads)
    configure_process(threads)
    console = Console(quiet)
    predictor = Predictor.from_pretrained(model, replica=replica, machine=machine, max_seq_length=max_seq_length)
    what = {"regression": "a score", "multi-label": "multi-label: "}.get(predictor.task, "")
    what += "" if predictor.task == "regression" else ", ".join(predictor.labels)
    console.line(f"Predicting with the {predictor.kind} ({what})")
    result = predict_file(predictor, source, output, stream=sys.stdout,
                          probabilities=probabilities, on_progress=console.count_hook)
    console.done()
    if result.examples == 0:
        console.line(f"{source.name}: no examples; the output is empty" + (f" ({output})" if output else ""))
    elif output is not None:
        console.line(f"{result.examples:,} predictions written to {output}")
    if result.evaluation is not None:
        _report(result.evaluation, source.name, confusion, to_stderr=output is None, metrics_json=metrics_json)


def _report(evaluation: Evaluation, name: str, confusion: bool, *, to_stderr: bool, metrics_json: Path | None) -> None:
    """The scores (on stderr when the predictions go to stdout), the confusion matrix, the metrics file."""
    m = evaluation.metrics
    if evaluation.examples:
        scores = ", ".join(f"{label} {m[key]:.4f}" for key, label in EVALUATION_METRICS[evaluation.task])
        click.echo(f"{name}: {evaluation.examples:,} labelled examples: {scores}", err=to_stderr)
    if evaluation.unknown:
        click.echo(f"{name}: {evaluation.unknown:,} example(s) have a label the model does not know "
                   f"(it knows {', '.join(evaluation.labels)}); they are left out of the scores", err=True)
    if confusion and evaluation.examples and evaluation.task == "single-label":
        click.echo(confusion_table(evaluation.labels, evaluation.confusion), err=to_stderr)
    if metrics_json is not None:
        write_metrics(metrics_json, evaluation)
