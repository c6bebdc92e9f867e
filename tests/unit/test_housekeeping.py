"""Housekeeping: run scratch removed or kept by outcome and pruned after its retention; files created
with the mode the umask asks for (not mkstemp's private 0600)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from models import runs

ROOT = Path(__file__).resolve().parents[2]


def make_scratch(home: Path, name: str, age_days: float) -> Path:
    folder = runs.run_dir(home, name)
    (folder / "training").mkdir(parents=True)
    (folder / "training" / "log.csv").write_text("epoch,loss\n")
    stamp = time.time() - age_days * 86400
    for path in (folder / "training" / "log.csv", folder / "training", folder):
        os.utime(path, (stamp, stamp))
    return folder


def test_prune_removes_scratch_past_its_retention_and_keeps_the_rest(tmp_path):
    old = make_scratch(tmp_path, "old-failed-run", age_days=8)
    recent = make_scratch(tmp_path, "recent-failed-run", age_days=6)
    mine = make_scratch(tmp_path, "this-run", age_days=30)
    assert runs.prune(tmp_path, retention_days=7, keep=mine) == [old]
    assert not old.exists() and recent.exists() and mine.exists()
    assert runs.prune(tmp_path / "nowhere", retention_days=7) == []


def test_a_file_written_recently_keeps_an_old_folder(tmp_path):
    folder = make_scratch(tmp_path, "long-run", age_days=10)
    (folder / "training" / "log.csv").write_text("epoch,loss\n1,0.9\n")  # written now
    assert runs.prune(tmp_path, retention_days=7) == []


UMASK_SCRIPT = """
import json, os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
os.umask(int(sys.argv[3], 8))
import pandas as pd
from models.prices import store
from models.registry import Registry, deliveries
home = Path(sys.argv[2])
frame = pd.DataFrame({"date": pd.to_datetime(["2024-01-02"]), "open": [1.0], "high": [1.0], "low": [1.0],
                      "close": [1.0], "adj_close": [1.0], "volume": [1]})
price, _ = store.upsert(home, "ACME", frame, "sample:signal:seed=7", pd.Timestamp.now(tz="UTC"))
src = home / "src"; src.mkdir()
files = {name: src / name for name in ("model.keras", "stats.parquet", "report.md")}
for path in files.values():
    path.write_bytes(b"stand-in")
registry = Registry(home / "registry")
bundle = registry.publish("updown", files,
                          {"gate": {"verdict": "promoted", "reasons": []}}, promote=True)
deliveries.write(registry, "updown", bundle.version, deliveries.new_record("updown", 1, "promoted", None))
paths = [price, price.parent / "source.json", *sorted(bundle.path.iterdir()), bundle.path,
         bundle.path.parent / "aliases.json",
         bundle.path.parent / "deliveries" / "1.json"]
print(json.dumps({str(p.relative_to(home)): oct(p.stat().st_mode & 0o777) for p in paths}))
"""


@pytest.mark.parametrize(
    ("umask", "file_mode", "dir_mode"),
    [(0o022, 0o644, 0o755), (0o007, 0o660, 0o770)],
    ids=["umask-022", "umask-007"],
)
def test_price_files_bundles_and_records_take_the_umasks_mode(tmp_path, umask, file_mode, dir_mode):
    done = subprocess.run(
        [sys.executable, "-c", UMASK_SCRIPT, str(ROOT), str(tmp_path), oct(umask)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    modes = json.loads(done.stdout)
    for name, mode in modes.items():
        expected = dir_mode if stat.S_ISDIR((tmp_path / name).stat().st_mode) else file_mode
        assert int(mode, 8) == expected, f"{name}: {mode}, expected {oct(expected)} under umask {oct(umask)}"
    assert (
        any(name.endswith("/ACME.parquet") for name in modes) and "registry/updown/1/manifest.json" in modes
    )
