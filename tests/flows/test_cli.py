"""The command lines as a user meets them: real processes, exit statuses, one paragraph per error.

`python -m flows.retrain`, `python -m flows.ingest` and `python -m models` exit 0 when done, 1 when
the run failed (or its model was rejected), 2 on bad usage or configuration; an error is one
paragraph on stderr, never a traceback unless --debug asks for one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.flows.test_ingest_flow import END, START, folder_universe
from tests.helpers import tiny_config

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("prefect", "tensorflow", "keras")

# Runs a command line's module as `python -m` does, then records what it imported.
PROBE = """
import json, runpy, sys
module, out = sys.argv[1], sys.argv[2]
sys.argv = [module, *sys.argv[3:]]
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    status = 0
except SystemExit as done:
    status = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
with open(out, "w") as f:
    json.dump({"status": status, "imported": [m for m in HEAVY if m in sys.modules]}, f)
sys.exit(status)
""".replace("HEAVY", repr(HEAVY))


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PIPELINE_CONFIG")}
    return {**env, **extra}


def run_cli(module: str, args: list[str], tmp_path: Path, **env: str) -> dict:
    """Run `python -m module args` in a fresh process; status, stdout, stderr and heavy imports."""
    out = tmp_path / "probe.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, module, str(out), *args],
        cwd=ROOT,
        env=environment(**env),
        capture_output=True,
        text=True,
        timeout=600,
    )
    probe = json.loads(out.read_text())
    assert probe["status"] == done.returncode
    return {"status": done.returncode, "stdout": done.stdout, "stderr": done.stderr, **probe}


def assert_one_paragraph(result: dict, *expected: str) -> str:
    """stderr is exactly one error paragraph containing `expected`; no traceback anywhere."""
    stderr = result["stderr"].strip()
    assert "Traceback" not in result["stderr"] + result["stdout"]
    assert stderr.startswith("error: "), stderr
    assert "\n\n" not in stderr and stderr.count("error: ") == 1, stderr
    for text in expected:
        assert text in stderr, (text, stderr)
    return stderr


@pytest.fixture
def config_file(tmp_path):
    def write(data: dict | str, name: str = "config.json") -> str:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        return str(path)

    return write


RETRAIN_CONFIG_ERRORS = [
    (["--theta", "5"], ["labels.theta (--theta) = 5.0", "less than 1"]),
    (["--theta", "0"], ["labels.theta (--theta) = 0.0", "greater than 0"]),
    (["--window", "0"], ["window.length (--window) = 0", "greater than or equal to 1"]),
    (["--window", "100000"], ["a window of 100000 sessions", "cannot fit", "start earlier"]),
    (["--horizon", "0"], ["labels.horizon (--horizon) = 0"]),
    (["--epochs", "0"], ["training.epochs (--epochs) = 0"]),
    (["--seed", "-1"], ["source.sample_seed (--seed) = -1"]),
    (["--tickers", ""], ["source.tickers (--tickers)", "the universe is empty"]),
    (["--tickers", "AAA,,BBB"], ["source.tickers (--tickers)", "it is empty"]),
    (["--tickers", "AAA,aaa"], ["tickers listed twice: AAA"]),
    (["--tickers", "../etc"], ["'../etc' is not a valid symbol"]),
    (["--end", "2999-01-04"], ["source.end (--end)", "2999-01-04 is in the future"]),
    (["--start", "2999-01-04"], ["source.start (--start)", "in the future"]),
    (["--start", "2024-05-01", "--end", "2024-01-02"], ["end 2024-01-02 is before start 2024-05-01"]),
    (["--model-name", "Bad Name"], ["model.name (--model-name) = 'Bad Name'"]),
    (["--source", "folder"], ["source kind 'folder' needs `folder`"]),
    (["--dask-address", "tcp://10.0.0.5:8786"], ["--dask-address needs --task-runner dask"]),
]


def run_in_process(main, args: list[str], capsys) -> dict:
    """A command line's main() in this process (cheap; imports are checked in fresh processes)."""
    try:
        status = main(args)
    except SystemExit as done:  # argparse
        status = done.code
    captured = capsys.readouterr()
    return {"status": status, "stdout": captured.out, "stderr": captured.err}


@pytest.mark.parametrize(("args", "expected"), RETRAIN_CONFIG_ERRORS, ids=lambda v: str(v))
def test_retrain_config_errors_are_one_paragraph_with_status_2(tmp_path, monkeypatch, capsys, args, expected):
    from flows.cli import retrain_main

    monkeypatch.setenv("PIPELINE_HOME", str(tmp_path / "home"))
    result = run_in_process(retrain_main, args, capsys)
    assert result["status"] == 2
    assert_one_paragraph(result, *expected)
    assert result["stdout"] == ""
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("flows.retrain", ["--theta", "5"]),
        ("flows.retrain", ["--window", "100000"]),
        ("flows.ingest", ["--max-failed-share", "5"]),
    ],
)
def test_a_config_error_stops_before_prefect_or_tensorflow_is_imported(tmp_path, module, args):
    result = run_cli(module, args, tmp_path, PIPELINE_HOME=str(tmp_path / "home"))
    assert result["status"] == 2
    assert_one_paragraph(result, "error: invalid configuration")
    assert result["imported"] == []  # nothing fetched, no Prefect API, no TensorFlow


def test_a_config_file_error_names_the_file_and_the_field(tmp_path, config_file):
    path = config_file({"labels": {"theta": 5}})
    result = run_cli("flows.retrain", ["--config", path], tmp_path)
    assert result["status"] == 2
    assert_one_paragraph(result, f"in the config file {path}", "labels.theta (--theta) = 5")

    broken = config_file('{"labels": {"theta": 0.01}', "broken.json")
    result = run_cli("flows.retrain", ["--config", broken], tmp_path)
    assert result["status"] == 2
    assert_one_paragraph(result, "not valid JSON", broken)

    missing = str(tmp_path / "nope.json")
    result = run_cli("flows.retrain", ["--config", missing], tmp_path)
    assert result["status"] == 2
    assert_one_paragraph(result, f"cannot read the config file {missing}: No such file or directory")

    # PIPELINE_CONFIG is the --config of a command line that gives none.
    result = run_cli("flows.retrain", [], tmp_path, PIPELINE_CONFIG=path)
    assert result["status"] == 2
    assert_one_paragraph(result, f"in the config file {path}", "labels.theta (--theta) = 5")


def test_a_home_that_cannot_hold_data_is_refused_before_the_run(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    result = run_cli("flows.retrain", ["--home", str(a_file)], tmp_path)
    assert result["status"] == 2
    assert_one_paragraph(result, f"the data home {a_file} is a file, not a folder", "--home")
    assert result["imported"] == []

    result = run_cli("flows.ingest", ["--home", str(a_file / "below")], tmp_path)
    assert result["status"] == 2
    assert_one_paragraph(result, "is not a writable folder", "--home")


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux /proc")
def test_a_home_under_proc_says_why_it_cannot_be_created(tmp_path):
    result = run_cli("flows.retrain", ["--home", "/proc/x"], tmp_path)
    assert result["status"] == 2
    assert_one_paragraph(
        result, "the data home /proc/x is not a writable folder", "inside /proc, which refuses new folders"
    )


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_home_is_refused(tmp_path):
    read_only = tmp_path / "ro"
    read_only.mkdir(mode=0o500)
    result = run_cli("flows.retrain", ["--home", str(read_only)], tmp_path)
    assert result["status"] == 2
    assert_one_paragraph(result, f"the data home {read_only} is not a writable folder", "Permission denied")


def test_a_missing_price_folder_is_refused_once_not_per_ticker(tmp_path):
    missing = tmp_path / "no-such-folder"
    for module in ("flows.retrain", "flows.ingest"):
        result = run_cli(module, ["--source", "folder", "--folder", str(missing)], tmp_path)
        assert result["status"] == 2
        assert_one_paragraph(result, f"the price folder {missing} (--folder, source.folder) does not exist")
        assert result["imported"] == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--max-failed-share", "-1"],
            ["max_failed_share (--max-failed-share) = -1.0", "greater than or equal to 0"],
        ),
        (["--max-failed-share", "5"], ["max_failed_share (--max-failed-share) = 5.0", "less than 1"]),
        (["--max-failed-share", "1"], ["less than 1"]),
        (["--tickers", ""], ["source.tickers (--tickers)", "the universe is empty"]),
        (["--end", "2999-01-04"], ["source.end (--end)", "in the future"]),
    ],
    ids=lambda v: str(v),
)
def test_ingest_config_errors_are_one_paragraph_with_status_2(tmp_path, monkeypatch, capsys, args, expected):
    from flows.cli import ingest_main

    monkeypatch.setenv("PIPELINE_HOME", str(tmp_path / "home"))
    result = run_in_process(ingest_main, args, capsys)
    assert result["status"] == 2
    assert_one_paragraph(result, *expected)
    assert result["stdout"] == "" and not (tmp_path / "home").exists()


def test_usage_errors_are_argparse_status_2_without_traceback(tmp_path):
    for module, args in (
        ("flows.retrain", ["--epochs", "x"]),
        ("flows.ingest", ["--config", "x.json"]),  # the ingest command line has no --config
        ("models", ["prune", "updown", "--keep", "0"]),
    ):
        result = run_cli(module, args, tmp_path)
        assert result["status"] == 2, (module, args, result)
        assert "Traceback" not in result["stderr"] and "error: " in result["stderr"]
        assert result["imported"] == []


def test_registry_errors_are_one_paragraph_with_status_1(tmp_path):
    result = run_cli("models", ["show", "nope@champion", "--registry", str(tmp_path)], tmp_path)
    assert result["status"] == 1
    assert_one_paragraph(result, "model 'nope' has no alias 'champion'")
    result = run_cli("models", ["show", "nope@champion", "--registry", str(tmp_path), "--debug"], tmp_path)
    assert result["status"] == 1 and "Traceback" in result["stderr"]


@pytest.mark.parametrize("module", ["flows.retrain", "flows.ingest", "models"])
def test_help_imports_neither_prefect_nor_tensorflow(tmp_path, module):
    result = run_cli(module, ["--help"], tmp_path)
    assert result["status"] == 0 and result["imported"] == []
    assert "Exit status" in result["stdout"]


@pytest.mark.parametrize("build", ["build_retrain_parser", "build_ingest_parser"])
def test_help_mentions_only_options_that_exist(build):
    import re

    import flows.cli

    parser = getattr(flows.cli, build)()
    known = {option for action in parser._actions for option in action.option_strings}
    mentioned = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", parser.format_help()))
    assert mentioned <= known, mentioned - known


# --- runs against the session's Prefect API (no temporary server per process) ---------------------


@pytest.fixture
def api_env(prefect_api) -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    return {"PREFECT_API_URL": PREFECT_API_URL.value()}


def ingest_args(folder: Path, home: Path, tickers: list[str]) -> list[str]:
    return [
        "--source", "folder", "--folder", str(folder), "--tickers", ",".join(tickers),
        "--start", START.isoformat(), "--end", END.isoformat(), "--home", str(home),
    ]  # fmt: skip


def table_lines(stdout: str) -> list[str]:
    lines = stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["ticker", "status", "rows_added"], stdout
    return lines


def test_a_rejected_ingest_prints_the_table_once_and_one_paragraph(tmp_path, api_env):
    folder = tmp_path / "csv"
    folder.mkdir()
    tickers = ["AAA", "BBB", "CCC", "BAD", "WORSE"]
    folder_universe(folder, ["AAA", "BBB", "CCC"], ["BAD", "WORSE"])
    result = run_cli("flows.ingest", ingest_args(folder, tmp_path / "home", tickers), tmp_path, **api_env)
    assert result["status"] == 1
    lines = table_lines(result["stdout"])
    rows = {line.split()[0]: line for line in lines[1:-1]}
    assert set(rows) == set(tickers) and lines[-1] == "5 tickers: 3 ok, 2 quarantined"
    assert rows["BAD"].split()[1] == "quarantined"
    where = f"{folder / 'BAD.csv'}: line 12"  # the file and line of the broken row
    assert rows["BAD"].endswith(f"BAD 2024-01-17 column 'high': high below low (1 row(s); {where})")
    assert rows["AAA"].split()[1:5] == ["ok", "61", "2024-01-02", "2024-03-28"]
    assert (result["stdout"] + result["stderr"]).count("rows_added") == 1  # printed once
    # The console log: one line per record, no traceback; the error: one paragraph, last.
    assert "Traceback" not in result["stderr"]
    *log, paragraph = result["stderr"].strip().splitlines()
    assert paragraph.startswith("error: 2 of 5 tickers failed to ingest (more than 20%): BAD 2024-01-17")
    assert "allow a larger share (--max-failed-share" in paragraph
    assert not any(line.startswith("error: ") for line in log)

    # Prefect's own logs of the run keep the detail.
    assert "Traceback" in failed_run_logs("ingest")


def failed_run_logs(flow_name: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.FAILED]))
            ),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
    return "\n".join(log.message for log in logs)


def test_quarantine_within_the_share_exits_0_and_json_lists_every_record(tmp_path, api_env):
    folder = tmp_path / "csv"
    folder.mkdir()
    tickers = ["AAA", "BBB", "CCC", "DDD", "BAD"]
    folder_universe(folder, ["AAA", "BBB", "CCC", "DDD"], ["BAD"])
    args = [*ingest_args(folder, tmp_path / "home", tickers), "--json"]
    result = run_cli("flows.ingest", args, tmp_path, **api_env)
    assert result["status"] == 0, result["stderr"]
    assert "Traceback" not in result["stderr"] and "error: " not in result["stderr"]
    records = {r["ticker"]: r for r in json.loads(result["stdout"])}
    assert set(records) == set(tickers) and records["BAD"]["status"] == "quarantined"
    assert [records[t]["status"] for t in tickers[:4]] == ["ok"] * 4


def test_a_failed_retrain_is_one_paragraph(tmp_path, api_env, config_file):
    # theta 0.5 is a valid value, but no 5-day return of the sample market reaches ±50 %: the
    # dataset's label check refuses it before any training.
    config = tiny_config(labels={"theta": 0.5}).model_dump(mode="json")
    args = ["--config", config_file(config), "--home", str(tmp_path / "home")]
    result = run_cli("flows.retrain", args, tmp_path, **api_env)
    assert result["status"] == 1
    assert "Traceback" not in result["stdout"] + result["stderr"]
    paragraph = result["stderr"][result["stderr"].index("error: ") :]
    assert paragraph.startswith("error: [class-missing] The train split has no 'down, up' windows")
    assert "Fix: Change theta (0.5)" in paragraph
    assert result["stdout"] == ""  # the ingest table comes with a verdict, or with a failed ingest
    assert "tensorflow" not in result["imported"]  # refused before training


def test_debug_brings_back_every_traceback(tmp_path, api_env):
    folder = tmp_path / "csv"
    folder.mkdir()
    folder_universe(folder, [], ["BAD"])
    args = [*ingest_args(folder, tmp_path / "home", ["BAD"]), "--max-failed-share", "0", "--debug"]
    result = run_cli("flows.ingest", args, tmp_path, **api_env)
    assert result["status"] == 1
    stderr = result["stderr"]
    assert stderr.count("Traceback (most recent call last)") >= 3  # the task's, the flow's, the CLI's
    assert "models.errors.IngestFailed: 1 of 1 tickers failed to ingest" in stderr
    assert stderr.strip().splitlines()[-1].startswith("error: 1 of 1 tickers failed to ingest")


def test_flow_runs_refuse_the_same_values(tmp_path, prefect_api):
    """Deployment runs validate their parameters with the same models/config.py rules."""
    from prefect.exceptions import ParameterTypeError

    from flows.ingest import ingest
    from flows.retrain import retrain
    from models.config import SourceConfig

    with pytest.raises(ParameterTypeError, match="max_failed_share"):
        ingest(SourceConfig(), str(tmp_path), max_failed_share=5)
    with pytest.raises(ParameterTypeError, match="theta"):
        retrain({"labels": {"theta": 5}}, str(tmp_path))
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    state = ingest(SourceConfig(tickers=("AAA",)), str(a_file), return_state=True)
    assert state.is_failed() and "is a file, not a folder" in str(state.result(raise_on_failure=False))


def test_prefect_settings_a_run_needs_come_from_pyproject_without_any_environment(tmp_path):
    """`python -m flows.retrain` outside make gets the same Prefect settings as `make demo`."""
    script = (
        "from prefect.settings import get_current_settings as s; c = s(); "
        "print(c.server.analytics_enabled, c.server.ephemeral.startup_timeout_seconds, "
        "c.server.ui.enabled, c.home)"
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["False", "120", "False", ".prefect"]
