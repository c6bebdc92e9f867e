"""Errors a run ends with, carrying what a caller needs to report them, and how a command line says so.

Every command line of the project (`python -m flows.retrain`, `python -m flows.ingest`,
`python -m models`) reports a failure the same way: `explain(error)` turns it into one paragraph and
an exit status: 2 for a usage or configuration error (nothing ran), 1 for a data or run failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError

EXIT_OK = 0
EXIT_FAILED = 1  # the run failed, or its model was rejected
EXIT_USAGE = 2  # bad command line or configuration: nothing ran (argparse's status too)


class UsageError(ValueError):
    """The command line or configuration cannot run as given (exit status 2); the message says why."""


class ModelRejected(RuntimeError):
    """The trained model was published as a rejected version; no alias moved."""

    def __init__(self, summary: dict):
        self.summary = summary
        reasons = "; ".join(summary.get("reasons", [])) or "no reason recorded"
        super().__init__(
            f"{summary['model']}/{summary['version']} was REJECTED and not promoted: {reasons} "
            f"(bundle kept for inspection at {summary['path']})"
        )


class RejectedBefore(RuntimeError):
    """This very data and configuration already gave a rejected version; nothing was trained."""

    def __init__(
        self, model: str, version: int, reasons: list[str], hint: str, quarantined: dict | None = None
    ):
        self.model, self.version, self.reasons = model, version, reasons
        self.quarantined = quarantined or {}  # ticker -> why ingest dropped it, this run
        because = "; ".join(reasons) or "no reason recorded"
        self.reason = (
            f"version {version} of {model} was rejected on exactly this data (same data, same config): "
            f"{because}"
        )
        super().__init__(f"{self.reason}. Nothing was trained; {hint}")


class IncompleteUniverse(RuntimeError):
    """Ingest quarantined tickers and the run must train on the whole universe (nothing trained)."""


class IngestFailed(RuntimeError):
    """More of the universe was quarantined than the run allows; `records` holds every ticker's outcome."""

    def __init__(self, message: str, records: list[dict]):
        self.records = records
        super().__init__(message)


@dataclass(frozen=True)
class Explanation:
    """What a command line prints for an error (one paragraph) and the status it exits with."""

    text: str
    status: int


# Errors the pipeline raises on purpose, with a message written for a person. Anything else escaping
# a command is a bug, and is reported as one.
EXPECTED = (ValueError, RuntimeError, OSError)


def explain(
    error: BaseException,
    flags: Mapping[str, str] | None = None,
    model: type[BaseModel] | None = None,
    origin: str | None = None,
) -> Explanation:
    """One paragraph saying what is wrong, where, and how to fix it, with the exit status.

    Args:
        error: The exception that ended the command.
        flags: Config field path (e.g. "labels.theta") -> the command-line option that sets it.
        model: The pydantic model a ValidationError came from, to quote each field's description.
        origin: Where the configuration came from (e.g. "config file x.json"), said in the message.
    """
    if isinstance(error, ValidationError):
        return Explanation(describe_validation_error(error, flags or {}, model, origin), EXIT_USAGE)
    if isinstance(error, UsageError):
        return Explanation(f"error: {error}", EXIT_USAGE)
    if isinstance(error, KeyboardInterrupt):
        return Explanation("interrupted", 130)
    if isinstance(error, OSError) and error.filename is not None:
        where = f"{error.filename}" + (f" -> {error.filename2}" if error.filename2 else "")
        return Explanation(f"error: {where}: {error.strerror or error}", EXIT_FAILED)
    if isinstance(error, EXPECTED):
        return Explanation(f"error: {error}", EXIT_FAILED)
    return Explanation(
        f"unexpected error {type(error).__name__}: {error}. This is a bug in the pipeline, not in your "
        "input: rerun with --debug for the traceback and report it.",
        EXIT_FAILED,
    )


def describe_validation_error(
    error: ValidationError,
    flags: Mapping[str, str],
    model: type[BaseModel] | None = None,
    origin: str | None = None,
) -> str:
    """The problems of a pydantic ValidationError, each naming its field, option, value and rule."""
    problems = []
    for item in error.errors(include_url=False):
        loc = ".".join(str(part) for part in item["loc"])
        if item["type"] == "json_invalid":
            problems.append(f"not valid JSON: {item['ctx'].get('error', item['msg'])}")
            continue
        # A validator's own ValueError says it best; pydantic would prefix it with "Value error, ".
        cause = (item.get("ctx") or {}).get("error")
        own = isinstance(cause, Exception)
        message = str(cause) if own else _lower_first(item["msg"])
        option = flags.get(loc)
        value = item.get("input")
        shown = f" = {value!r}" if loc and _scalar(value) and item["type"] != "missing" else ""
        line = f"{loc}{f' ({option})' if option else ''}{shown}: {message}" if loc else message
        described = None if own or model is None else _description(model, item["loc"])
        if described:
            line += f" ({_lower_first(described.rstrip('.'))})"
        problems.append(line)
    where = f" in {origin}" if origin else ""
    if len(problems) == 1:
        return f"error: invalid configuration{where}: {problems[0]}"
    listed = "\n".join(f"  - {p}" for p in problems)
    return f"error: invalid configuration{where}, {len(problems)} problems:\n{listed}"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def _description(model: type[BaseModel], loc: tuple) -> str | None:
    """The `description` of the field at `loc`, walking nested models (list indices end the walk)."""
    current: type[BaseModel] | None = model
    described = None
    for part in loc:
        if not isinstance(part, str):
            break
        if current is None or part not in current.model_fields:
            return None
        field = current.model_fields[part]
        described = field.description
        annotation = field.annotation
        current = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return described
