"""One error path for every command line: models.errors.explain and what flows/console.py prints."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from pydantic import ValidationError

from flows.console import OneLineFormatter, ingest_table
from models.config import PipelineConfig
from models.errors import EXIT_FAILED, EXIT_USAGE, IngestFailed, ModelRejected, UsageError, explain
from models.prices.ingest import IngestRecord


def validation_error(**sections) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        PipelineConfig.model_validate(sections)
    return caught.value


def test_a_config_error_names_field_option_value_rule_and_meaning():
    error = validation_error(labels={"theta": 5})
    explained = explain(error, {"labels.theta": "--theta"}, PipelineConfig)
    assert explained.status == EXIT_USAGE
    assert explained.text == (
        "error: invalid configuration: labels.theta (--theta) = 5: input should be less than 1 "
        "(rule=fixed: returns beyond ±theta are up/down (0.01 = 1 %))"
    )


def test_several_config_errors_are_listed_under_one_line():
    error = validation_error(labels={"theta": 5}, window={"length": 0})
    text = explain(error, {}, PipelineConfig, "the config file c.json").text
    first, *items = text.splitlines()
    assert first == "error: invalid configuration in the config file c.json, 2 problems:"
    assert items[0].startswith("  - labels.theta = 5: input should be less than 1")
    assert items[1].startswith("  - window.length = 0: input should be greater than or equal to 1")


def test_a_validators_own_message_is_kept_whole():
    error = validation_error(source={"tickers": ["AAA", "aaa"]})
    text = explain(error, {"source.tickers": "--tickers"}, PipelineConfig).text
    assert text == "error: invalid configuration: source.tickers (--tickers): tickers listed twice: AAA"


@pytest.mark.parametrize(
    ("error", "status", "text"),
    [
        (UsageError("--dask-address needs --task-runner dask"), EXIT_USAGE, "error: --dask-address needs"),
        (IngestFailed("2 of 5 tickers failed", []), EXIT_FAILED, "error: 2 of 5 tickers failed"),
        (RuntimeError("the source is down"), EXIT_FAILED, "error: the source is down"),
        (FileNotFoundError(2, "No such file or directory", "/x.csv"), EXIT_FAILED, "error: /x.csv: No such"),
        (KeyError("volume"), EXIT_FAILED, "unexpected error KeyError: 'volume'. This is a bug"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_every_error_gets_a_status_and_one_paragraph(error, status, text):
    explained = explain(error)
    assert explained.status == status and explained.text.startswith(text)
    assert "Traceback" not in explained.text


def test_a_rejected_model_is_a_run_failure():
    summary = {"model": "updown", "version": 3, "path": "/r/updown/3", "reasons": ["too weak"]}
    explained = explain(ModelRejected(summary))
    assert explained.status == EXIT_FAILED and "updown/3 was REJECTED" in explained.text


def test_the_ingest_table_shows_every_field_of_the_record_and_a_count():
    records = [
        IngestRecord("BBB", "quarantined", reason="BBB 2024-01-17 column 'high': high below low").as_dict(),
        IngestRecord("AAA", "ok", 61, "2024-01-02", "2024-03-28", fetched_from="2024-01-02").as_dict(),
    ]
    header, aaa, bbb, total = ingest_table(records).splitlines()
    names = [f.name for f in dataclasses.fields(IngestRecord)]
    assert sorted(header.split()) == sorted(names)
    assert header.split()[-1] == "reason"  # free text last (the other columns hold no spaces here)
    assert aaa.split()[:5] == ["AAA", "ok", "61", "2024-01-02", "2024-03-28"]
    assert bbb.endswith("BBB 2024-01-17 column 'high': high below low")
    assert total == "2 tickers: 1 ok, 1 quarantined"  # statuses in the order of the sorted tickers


def test_a_field_added_to_the_record_shows_up_without_a_change():
    records = [{**IngestRecord("AAA", "ok", 3).as_dict(), "cached": True, "zero_volume_days": 2}]
    header, row, _ = ingest_table(records).splitlines()
    cells = dict(zip(header.split(), row.split(), strict=True))
    assert cells["cached"] == "yes" and cells["zero_volume_days"] == "2" and cells["reason"] == "-"


def test_the_console_formatter_keeps_one_line_and_no_traceback():
    try:
        raise ValueError("bad data\nsecond line")
    except ValueError:
        import sys

        record = logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1, "failed: %r", None, None)
        record.args = (sys.exc_info()[1],)
        record.exc_info = sys.exc_info()
    line = OneLineFormatter(logging.Formatter("%(levelname)s %(message)s")).format(record)
    assert line == "ERROR failed: ValueError('bad data\\nsecond line')"
    assert record.exc_info is not None  # the record itself is untouched: the API handler keeps it
    long = logging.LogRecord("x", logging.INFO, __file__, 1, "y" * 500, None, None)
    assert len(OneLineFormatter(None, width=80).format(long)) == 80
