"""Exceptions raised by optuna-seqclf. Each one carries a complete, one-line message for the user."""

from __future__ import annotations

from collections.abc import Callable


class SeqClfError(Exception):
    """Root of every error this library raises on purpose (bad input, bad state)."""


class ConfigError(SeqClfError):
    """A setting is invalid: grid values, epochs, seeds, names, paths.

    ``field`` names the setting (``epochs``) when the message starts with it; the command line shows its
    option (``--epochs``) there instead, since that is what its user typed.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DataError(SeqClfError):
    """A data split is missing or malformed. The message names the file and the line."""


class ModelLoadError(SeqClfError):
    """The model or tokenizer cannot be loaded, or they do not fit together."""


class StudyError(SeqClfError):
    """The study or its storage is missing, unreachable, corrupt or incompatible."""


class DashboardError(SeqClfError):
    """optuna-dashboard cannot be served: the port is taken, or the package is missing."""


class OutputError(SeqClfError):
    """An output folder cannot be written."""


class TrackingError(SeqClfError):
    """An Aim run could not be created in the log folder."""


def first_line(exc: BaseException) -> str:
    """The first non-blank line of an exception's message (library errors are often multi-line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def redact(url: str) -> str:
    """A storage URL fit for a message: its password replaced by ***."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


def in_chain(exc: BaseException, test: Callable[[BaseException], bool]) -> BaseException | None:
    """The first error ``test`` accepts in ``exc``'s chain: itself, what it was raised from, and what it was
    raised while handling (``__cause__`` and ``__context__``, followed all the way)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        err = todo.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if test(err):
            return err
        todo += [err.__cause__, err.__context__]
    return None
