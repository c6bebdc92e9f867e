"""A separate publishing process for the registry tests (run as a script, never imported by pytest).

    python publisher.py publish ROOT COUNT          publish COUNT versions, print their numbers
    python publisher.py crash ROOT STEP             publish one version, SIGKILL itself at STEP
    python publisher.py judged ROOT COUNT SEED      release COUNT versions with random scores through
                                                    models.registry.publication.release (compare, then
                                                    compare-and-set); print each promotion as JSON
    python publisher.py smoke-kill ROOT             release one version, SIGKILL itself in the smoke test

ROOT is a folder or an fsspec URL (s3://bucket/prefix, with AWS_ENDPOINT_URL set for a local S3).
The crash points are set by wrapping the file-system calls the registry makes, inside this process
only, so the registry code under test is exactly the code that runs in production.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from models.registry import ObjectStoreRegistry, Registry  # noqa: E402
from models.registry import local as registry_module  # noqa: E402
from models.registry.bundle import ALIASES, MANIFEST, TMP_PREFIX  # noqa: E402

MODEL = "updown"
STEPS = (
    "mid-copy",  # one bundle file copied into the temporary folder, the others not
    "after-copy",  # every file copied, no manifest yet
    "mid-manifest",  # manifest temp file written and synced, not yet renamed to manifest.json
    "before-rename",  # complete temporary folder, not yet renamed into place
    "after-rename",  # version folder in place, aliases not moved
    "mid-alias",  # aliases temp file written, not yet swapped in
    "after-alias",  # aliases swapped, lock not yet released
)
# In an object store there is no rename: files go to a temporary prefix, are copied into the
# version's prefix, the manifest is written last, then aliases.json is replaced by one PUT.
OBJECT_STORE_STEPS = (
    "mid-upload",  # one file uploaded to the temporary prefix
    "mid-copy",  # one file copied into the version prefix, no manifest
    "before-manifest",  # every file copied, no manifest
    "after-manifest",  # manifest written, temporary prefix not yet removed, aliases not moved
    "after-alias",  # aliases.json replaced, lock object not yet removed
)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def bundle_files(folder: Path, tag: str) -> dict[str, Path]:
    """Small stand-ins for the bundle files: the registry treats every file alike."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, size in (("model.keras", 200_000), ("stats.parquet", 3_000), ("report.md", 500)):
        path = folder / name
        path.write_bytes((tag.encode() * size)[:size])
        files[name] = path
    return files


def manifest(tag: str, score: float | None = None) -> dict:
    return {
        "created_at": tag,
        "gate": {"verdict": "promoted", "reasons": []},
        "smoke_test": {"state": "passed"},
        **({} if score is None else {"score": score}),
    }


def judged(registry: Registry, scratch: Path, count: int, seed: int) -> list[dict]:
    """Release versions whose 'evaluation' is a score: promoted only if not below the champion's.

    Each candidate is compared with the champion of the moment it is evaluated, then waits a little
    (another publisher may promote meanwhile), then is released by compare-and-set.
    """
    import random
    import time

    from models.registry.publication import release

    rng = random.Random(seed)
    log = []

    def champion() -> tuple[int | None, float]:
        table = registry.aliases(MODEL)
        if "champion" not in table:
            return None, float("-inf")
        return int(table["champion"]), float(registry.manifest(f"{MODEL}/{table['champion']}")["score"])

    def judge(score: float, against: int | None) -> dict:
        theirs = float("-inf") if against is None else float(registry.manifest(f"{MODEL}/{against}")["score"])
        ok = score >= theirs
        gate = {"verdict": "promoted" if ok else "rejected", "reasons": [] if ok else [f"below v{against}"]}
        return {"gate": gate, "champion": {"version": against, "score": theirs}}

    for i in range(count):
        score = rng.random()
        expected, theirs = champion()
        evaluation = judge(score, expected)
        time.sleep(rng.random() * 0.05)
        compared = [expected]

        def rejudge(current: int | None, score=score, compared=compared) -> dict:
            # ChampionMoved must name a champion other than the one expected, and a retry happens
            # only when another publisher really promoted: never more often than it publishes.
            if current == compared[-1]:
                raise SystemExit(f"ChampionMoved although the champion is still {current}")
            if len(compared) > count + 1:
                raise SystemExit(f"compared {len(compared)} times: {compared}; promote keeps refusing")
            compared.append(current)
            return judge(score, current)

        meta = {**manifest(f"{os.getpid()}-{i}", score), "gate": evaluation["gate"]}
        bundle = release(
            registry,
            MODEL,
            bundle_files(scratch / str(i), f"{os.getpid()}-{i}"),
            meta,
            smoke=lambda b: {"passed": True, "reason": None},
            expected_champion=expected,
            rejudge=rejudge,
        )
        stored = registry.manifest(bundle)
        log.append(
            {
                "version": bundle.version,
                "score": score,
                "verdict": stored["gate"]["verdict"],
                "compared": compared,
                "replaced": compared[-1] if stored["gate"]["verdict"] == "promoted" else None,
            }
        )
    return log


def arm(step: str) -> None:
    """Replace the registry's file-system calls in this process so it dies at `step`."""
    real_copy, real_replace, real_rename = shutil.copyfile, os.replace, os.rename
    copies = []

    def copyfile(src, dst, *args, **kwargs):
        out = real_copy(src, dst, *args, **kwargs)
        copies.append(dst)
        if step == "mid-copy" and len(copies) == 1:
            die()
        return out

    def write_json(path, payload):
        if step == "after-copy" and Path(path).name == MANIFEST:
            die()
        return real_write_json(path, payload)

    def replace(src, dst, *args, **kwargs):
        name = Path(dst).name
        if (step == "mid-manifest" and name == MANIFEST) or (step == "mid-alias" and name == ALIASES):
            die()
        out = real_replace(src, dst, *args, **kwargs)
        if step == "after-alias" and name == ALIASES:
            die()
        return out

    def rename(src, dst, *args, **kwargs):
        if step == "before-rename" and Path(src).name.startswith(TMP_PREFIX):
            die()
        out = real_rename(src, dst, *args, **kwargs)
        if step == "after-rename" and Path(src).name.startswith(TMP_PREFIX):
            die()
        return out

    real_write_json = registry_module.write_json_atomic
    shutil.copyfile = copyfile
    os.replace = replace
    os.rename = rename
    registry_module.write_json_atomic = write_json


def arm_object_store(registry: ObjectStoreRegistry, step: str) -> None:
    """Wrap the registry's fsspec calls in this process so it dies at `step`."""
    fs = registry.fs
    real_put, real_copy, real_pipe = fs.put_file, fs.copy, fs.pipe_file

    def put_file(lpath, rpath, *args, **kwargs):
        out = real_put(lpath, rpath, *args, **kwargs)
        if step == "mid-upload":
            die()
        return out

    def copy(path1, path2, *args, **kwargs):
        out = real_copy(path1, path2, *args, **kwargs)
        if step == "mid-copy":
            die()
        return out

    def pipe_file(path, data, *args, **kwargs):
        name = str(path).rsplit("/", 1)[-1]
        if step == "before-manifest" and name == MANIFEST:
            die()
        out = real_pipe(path, data, *args, **kwargs)
        if (step == "after-manifest" and name == MANIFEST) or (step == "after-alias" and name == ALIASES):
            die()
        return out

    fs.put_file, fs.copy, fs.pipe_file = put_file, copy, pipe_file


def main(argv: list[str]) -> int:
    mode, root = argv[0], argv[1]
    registry = Registry(root)
    scratch = Path(tempfile.mkdtemp(prefix="publisher-"))
    if mode == "publish":
        done = []
        for i in range(int(argv[2])):
            files = bundle_files(scratch / str(i), f"{os.getpid()}-{i}")
            done.append(registry.publish(MODEL, files, manifest(f"{os.getpid()}-{i}"), promote=True).version)
        shutil.rmtree(scratch, ignore_errors=True)
        print(json.dumps(done))
        return 0
    if mode == "judged":
        print(json.dumps(judged(registry, scratch, int(argv[2]), int(argv[3]))))
        return 0
    if mode == "smoke-kill":
        from models.registry.publication import release

        release(
            registry,
            MODEL,
            bundle_files(scratch, "smoke-kill"),
            {"created_at": "smoke-kill", "gate": {"verdict": "promoted", "reasons": []}},
            smoke=lambda bundle: die(),
            expected_champion=registry.aliases(MODEL).get("champion"),
            rejudge=None,
        )
        print("published without crashing", file=sys.stderr)
        return 3
    if mode == "crash":
        step = argv[2]
        remote = isinstance(registry, ObjectStoreRegistry)
        steps = OBJECT_STORE_STEPS if remote else STEPS
        if step not in steps:
            raise SystemExit(f"unknown step {step!r}; steps: {steps}")
        files = bundle_files(scratch, f"crash-{step}")
        if remote:
            arm_object_store(registry, step)
        else:
            arm(step)
        registry.publish(MODEL, files, manifest(f"crash-{step}"), promote=True)
        print("published without crashing", file=sys.stderr)
        return 3
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
