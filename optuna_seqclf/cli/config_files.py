"""``--config FILE``: option values from a TOML (or YAML) file, and a command's resolved options written as one.

The file has shared keys at the top (they apply to every command with an option of that name) and a section
per command (``[tune]``, ``[train]``, ``[run]``, ``[predict]``, ...). Keys are option names without the dashes
(``batch-sizes``; ``batch_sizes`` works too); ``data-dir`` is the DATA_DIR argument. The file becomes click's
``default_map``, so a flag given on the command line wins over the file, and the file over the built-in default.
Every key and value is checked against the command's options before anything runs: an unknown key or a wrong
type is a one-line error naming the file, the key and what is expected.
"""

from __future__ import annotations

import difflib
import json
import math
import sys
from pathlib import Path
from typing import Any

import click

from optuna_seqclf.errors import ConfigError

# Options whose command-line value is a comma-separated list: the file may give a list (or the same string).
LIST_OPTIONS = frozenset({"batch_sizes", "learning_rates", "seeds"})
# ... and those whose items are names: a list of strings (or the same string, commas between)
NAME_LIST_OPTIONS = frozenset({"tracker", "label_columns", "lora_targets"})
# predict's arguments are its own (its MODEL is a trained model, not the pretrained one of `tune --model`)
SECTION_ONLY = frozenset({("predict", "model"), ("predict", "input_path")})
SKIPPED = frozenset({"config", "help", "version"})


def key_of(param: click.Parameter) -> str:
    """A parameter's key in the file: its long option without dashes, or its argument name (``data-dir``)."""
    if isinstance(param, click.Option):
        longs = [o for o in param.opts if o.startswith("--")]
        return (longs[0] if longs else param.opts[0]).lstrip("-")
    return "input" if param.name == "input_path" else str(param.name).replace("_", "-")


def settable(command: click.Command) -> dict[str, click.Parameter]:
    """The command's parameters a file may set, by key."""
    return {key_of(p): p for p in command.params if p.expose_value and p.name not in SKIPPED}


def read_config_file(path: Path) -> dict[str, Any]:
    """The file's table: TOML (``.toml``) or YAML (``.yaml``/``.yml``); a ConfigError naming the file otherwise."""
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"--config {path}: use a .toml, .yaml or .yml file (the extension picks the format)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config {path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    if suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # Python 3.10: the same parser, as a package
            import tomli as tomllib

        try:
            raw: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    else:
        import yaml

        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{path}: not valid YAML{where} ({getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a table of keys (and [command] sections)")
    return raw


def defaults_for(command: click.Command, commands: dict[str, click.Command], path: Path,
                 ctx: click.Context) -> dict[str, Any]:
    """The ``default_map`` for ``command`` from the file at ``path``, every key and value checked."""
    raw = read_config_file(path)
    sections = {k: v for k, v in raw.items() if isinstance(v, dict)}
    shared = {_norm(k): v for k, v in raw.items() if not isinstance(v, dict)}
    for name in sections:
        if name not in commands:
            raise ConfigError(f"{path}: unknown section [{name}] (sections: {', '.join(sorted(commands))})")
    every_key = {key for cmd in commands.values() for key in settable(cmd)}
    for key in shared:
        if key not in every_key:
            raise ConfigError(f"{path}: unknown key {key!r}{_close(key, every_key)}")
    options = settable(command)
    chosen = {k: (v, "") for k, v in shared.items()
              if k in options and (command.name, options[k].name) not in SECTION_ONLY}
    for key, value in sections.get(str(command.name), {}).items():
        key = _norm(key)
        if key not in options:
            raise ConfigError(f"{path}: [{command.name}] unknown key {key!r}{_close(key, set(options))}")
        chosen[key] = (value, f"[{command.name}] ")
    return {str(options[k].name): checked_value(path, where + k, v, options[k], ctx)
            for k, (v, where) in chosen.items()}


def _norm(key: str) -> str:
    return str(key).replace("_", "-")


def _close(key: str, known: set[str]) -> str:
    match = difflib.get_close_matches(key, sorted(known), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def checked_value(path: Path, key: str, value: Any, param: click.Parameter, ctx: click.Context) -> Any:
    """``value`` as the command line would give it, after checking it has the option's type."""
    def wrong(expected: str) -> ConfigError:
        return ConfigError(f"{path}: {key}: expected {expected}, got {_toml(value)}")

    if isinstance(param, click.Option) and param.is_flag:
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if param.name in LIST_OPTIONS:
        if isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            value = ",".join(repr(v) for v in value)
        elif not isinstance(value, str):
            raise wrong("a list of numbers, e.g. [8, 16, 32]")
    elif param.name in NAME_LIST_OPTIONS:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = ",".join(value)
        elif not isinstance(value, str):
            raise wrong('a list of names, e.g. ["aim", "mlflow"]')
    elif isinstance(value, (bool, list, dict)) or not isinstance(value, _accepted(param)):
        raise wrong(_expected(param))
    try:
        converted = param.type.convert(value, param, ctx)
        if param.callback is not None:
            param.callback(ctx, param, converted)
    except (click.BadParameter, click.UsageError) as exc:
        raise ConfigError(f"{path}: {key}: {exc.message}") from None
    return value


def _accepted(param: click.Parameter) -> type | tuple[type, ...]:
    """The Python types a file value may have for ``param`` (TOML and YAML give numbers as numbers)."""
    if isinstance(param.type, click.types.IntParamType):
        return int
    if isinstance(param.type, click.types.FloatParamType):
        return (int, float)
    return str


def _expected(param: click.Parameter) -> str:
    if isinstance(param.type, click.Choice):
        return "one of " + ", ".join(map(str, param.type.choices))
    if isinstance(param.type, click.types.IntParamType):
        return "a whole number"
    if isinstance(param.type, click.types.FloatParamType):
        return "a number"
    return "a path" if isinstance(param.type, click.Path) else "a string"


def resolved_config(command: click.Command, params: dict[str, Any], cli_name: str) -> str:
    """The command's resolved options as a TOML file that ``--config`` reads back to the same values."""
    lines = [f"# optuna-seqclf {command.name}: every option, resolved (command line > --config file > default).",
             f"# Run it with: {cli_name} {command.name} --config THIS_FILE", "", f"[{command.name}]"]
    for key, param in settable(command).items():
        value = params.get(str(param.name))
        if value is None:
            required = " (required)" if param.required else " (not set: the command's default applies)"
            lines.append(f"# {key} ={required}")
        else:
            lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    """A TOML value: strings (JSON's escapes are TOML's), booleans, numbers, arrays; paths as strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else json.dumps(str(value))
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)
