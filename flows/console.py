"""What the command lines show a person: one-line log records, the ingest table, one paragraph per error.

Nothing here imports Prefect at module level: the command lines import this before parsing.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterable, Mapping
from typing import TextIO

from models.errors import Explanation, explain


class OneLineFormatter(logging.Formatter):
    """Formats a record like `inner` does, as one console line: no traceback, at most `width` characters.

    Prefect's engines log every failed task and flow with its traceback, and then the state with the
    whole error message again; a command line reports the error once, in full, at the end. The API
    handler formats records on its own, so the run's logs in Prefect keep every traceback and every
    character; `--debug` keeps them on the console too.
    """

    def __init__(self, inner: logging.Formatter | None, width: int = 240):
        super().__init__()
        self.inner = inner or logging.Formatter()
        self.width = width

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            # A copy: the same record also goes to Prefect's API handler, which keeps the traceback.
            record = logging.makeLogRecord(
                {**record.__dict__, "exc_info": None, "exc_text": None, "stack_info": None}
            )
        text = self.inner.format(record)
        first, *more = text.splitlines() or [""]
        if more or len(first) > self.width:
            first = first[: self.width - 2].rstrip() + " …"
        return first


def tracebacks_off_the_console() -> None:
    """Give Prefect's console handlers a formatter without tracebacks (call after importing prefect)."""
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    ensure_logging_setup()  # as `import prefect` does; later (incremental) setups keep the handlers
    for name in (None, "uvicorn", "fastapi"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(
                handler.formatter, OneLineFormatter
            ):
                handler.setFormatter(OneLineFormatter(handler.formatter))


def format_table(rows: Iterable[Mapping[str, object]], columns: list[str]) -> str:
    """A plain-text table: one line per row, columns aligned, None as '-', the last column unpadded."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = []
    for values in [columns, *cells]:
        padded = [v.ljust(w) for v, w in zip(values[:-1], widths[:-1], strict=True)]
        lines.append("  ".join([*padded, values[-1]]).rstrip())
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def ingest_table(records: list[dict]) -> str:
    """Every ticker's ingest outcome, one column per field of its record, then a count per status.

    The columns are the records' own keys (IngestRecord.as_dict), in order, so a field added to
    IngestRecord shows up here without a change; columns holding free text (a reason, a note) go
    last, so the short ones stay aligned.
    """
    columns = list(dict.fromkeys(key for record in records for key in record))
    free_text = [c for c in columns if any(" " in str(r.get(c) or "") for r in records)]
    columns = [c for c in columns if c not in free_text] + free_text
    rows = sorted(records, key=lambda r: str(r.get("ticker")))
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row.get("status"))] = counts.get(str(row.get("status")), 0) + 1
    total = f"{len(rows)} ticker{'s' if len(rows) != 1 else ''}: " + ", ".join(
        f"{n} {status}" for status, n in counts.items()
    )
    return format_table(rows, columns) + "\n" + total


def report_error(
    error: BaseException,
    debug: bool,
    flags: Mapping[str, str] | None = None,
    model: type | None = None,
    origin: str | None = None,
    stream: TextIO | None = None,
) -> int:
    """Print the error as one paragraph (with --debug, its traceback first); return the exit status."""
    stream = stream or sys.stderr
    explanation: Explanation = explain(error, flags, model, origin)
    if debug:
        traceback.print_exception(error, file=stream)
    print(explanation.text, file=stream)
    return explanation.status
