"""The README's quick start, run as written: every command ends with the exit status the README gives.

The commands run in a fresh copy of the checkout (its own `.pipeline` and `.prefect`, so Prefect
starts on a new database as on a first run), from a shell environment without any PREFECT_*
variable, so what `[tool.prefect]` in pyproject.toml provides is what they get. PIPELINE_CONFIG
points `make demo` at a smaller model (3 epochs, one LSTM layer of 16, data up to 2024-12-31) to
keep this quick; the commands themselves are the README's, character for character.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
QUICK_CONFIG = {
    "source": {"start": "2016-01-04", "end": "2024-12-31"},
    "model": {"lstm_units": [16]},
    "training": {"epochs": 3},
}
NEVER = ("Traceback", "database is locked", "Failed to send telemetry", "retracing")


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def quick_start() -> list[tuple[str, int, str]]:
    """(command, exit status, what the README says happens) for each line of the quick start's blocks."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section("Quick start"), re.S):
        for line in filter(str.strip, block.splitlines()):
            match = re.fullmatch(r"(.+?)\s+# exit (\d+): (.+)", line)
            assert match, f"a quick-start command must say its exit status ('# exit N: ...'): {line}"
            commands.append((match[1].strip(), int(match[2]), match[3]))
    return commands


def test_every_quick_start_command_states_its_exit_status_and_the_set_up_commands_are_covered():
    commands = [c for c, _, _ in quick_start()]
    assert commands and "make demo" in commands
    top = re.search(r"```bash\n(.*?)```", README.read_text(), re.S)[1]
    set_up = [line.split("#")[0].strip() for line in top.splitlines() if line.strip()]
    # `make test` runs this suite; running it from inside the suite would recurse.
    assert set_up == ["make demo", "make test"]


def fresh_checkout(destination: Path) -> Path:
    """The working tree's files (tracked, and new ones git does not ignore) and the suite's .venv.

    The .venv is this suite's own, linked in part by part, with a fresh `.synced` marker: make must
    not re-sync (offline, and under the running tests) an environment that is already the lock's.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    venv = destination / ".venv"
    venv.mkdir()
    for part in (ROOT / ".venv").iterdir():
        if part.name == "pyvenv.cfg":
            shutil.copy2(part, venv / part.name)
        elif part.name != ".synced":
            (venv / part.name).symlink_to(part)
    (venv / ".synced").touch()
    return destination


@pytest.mark.slow
def test_the_quick_start_does_what_the_readme_says(tmp_path):
    checkout = fresh_checkout(tmp_path / "checkout")
    config = tmp_path / "quick.json"
    config.write_text(json.dumps(QUICK_CONFIG))
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "PIPELINE_CONFIG": str(config),
    }
    for command, status, says in quick_start():
        started = time.perf_counter()
        done = subprocess.run(
            ["bash", "-c", command], cwd=checkout, env=env, capture_output=True, text=True, timeout=900
        )
        print(f"{time.perf_counter() - started:6.1f} s  exit {done.returncode}  {command}")
        output = done.stdout + done.stderr
        assert done.returncode == status, f"{command}: exit {done.returncode}, README says {status}\n{output}"
        for word in ("PROMOTED", "REJECTED", "nothing to do"):
            if word in says:
                assert word in done.stdout, f"{command}: README says {word!r}\n{output}"
        for bad in NEVER:
            assert bad not in output, f"{command}: {bad!r} in the output\n{output}"
        if status == 2 and not command.startswith("make"):
            assert done.stderr.strip().startswith("error: ") and done.stdout == "", output
