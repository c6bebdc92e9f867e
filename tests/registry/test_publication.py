"""`release`: add the version (smoke test pending), smoke-test it, promote it by compare-and-set, and
record every outcome in the manifest and report: a failed smoke test or a lost comparison is a
rejected version whose gate reasons say why, and the champion stays where it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.registry import Registry
from models.registry.local import ChampionMoved
from models.registry.publication import release
from tests.registry.publisher import bundle_files

MODEL = "updown"


@pytest.fixture
def registry(tmp_path) -> Registry:
    return Registry(tmp_path / "registry")


def render(manifest: dict) -> str:
    """A report that shows what the manifest says (so the test sees which manifest was rendered)."""
    return json.dumps(
        {
            "gate": manifest["gate"],
            "champion": manifest.get("champion"),
            "smoke": manifest.get("smoke_test"),
        },
        sort_keys=True,
    )


def candidate(tmp_path: Path, tag: str, verdict: str = "promoted", reasons: list | None = None) -> tuple:
    files = bundle_files(tmp_path / "src" / tag, tag)
    manifest = {"created_at": tag, "gate": {"verdict": verdict, "reasons": reasons or []}}
    return files, manifest


class Calls:
    """Records the calls of a smoke test or rejudge stand-in and answers from a script."""

    def __init__(self, *answers):
        self.answers, self.calls = list(answers), []

    def __call__(self, arg):
        self.calls.append(arg)
        answer = self.answers.pop(0)
        return answer(arg) if callable(answer) else answer


def stored(registry: Registry, version: int) -> tuple[dict, str]:
    ref = f"{MODEL}/{version}"
    registry.verify(ref)  # the amended files still match the manifest's checksums
    return registry.manifest(ref), registry.read_file(ref, "report.md").decode()


def passed(reason=None) -> dict:
    return {"passed": True, "reason": reason, "seconds": 1.5}


def verdict(ok: bool, against: int | None, reason: str = "worse") -> dict:
    gate = {
        "verdict": "promoted" if ok else "rejected",
        "reasons": [] if ok else [reason],
        "against": against,
    }
    return {"gate": gate, "champion": {"version": against, "score": 0.5}}


def test_a_passed_smoke_test_is_recorded_and_the_version_becomes_champion(registry, tmp_path):
    def while_testing(bundle):  # a publisher killed now leaves a version nothing can promote
        assert registry.manifest(bundle)["smoke_test"] == {"state": "pending"}
        assert registry.aliases(MODEL) == {}
        return passed()

    smoke = Calls(while_testing)
    bundle = release(
        registry,
        MODEL,
        *candidate(tmp_path, "a"),
        smoke=smoke,
        expected_champion=None,
        rejudge=None,
        render=render,
    )
    assert bundle.version == 1 and smoke.calls == [bundle]
    manifest, report = stored(registry, 1)
    assert manifest["smoke_test"] == {"state": "passed", "passed": True, "reason": None, "seconds": 1.5}
    assert manifest["gate"] == {"verdict": "promoted", "reasons": []}
    assert registry.aliases(MODEL) == {"champion": 1, "latest": 1}
    assert report == (tmp_path / "src" / "a" / "report.md").read_text()  # not re-rendered


def test_without_a_smoke_test_the_state_is_not_run_and_the_version_is_promoted(registry, tmp_path):
    bundle = release(
        registry, MODEL, *candidate(tmp_path, "a"), smoke=None, expected_champion=None, rejudge=None
    )
    assert stored(registry, bundle.version)[0]["smoke_test"] == {"state": "not_run"}
    assert registry.aliases(MODEL) == {"champion": 1, "latest": 1}


def test_a_rejected_candidate_is_stored_untested_and_moves_no_alias(registry, tmp_path):
    release(registry, MODEL, *candidate(tmp_path, "a"), smoke=None, expected_champion=None, rejudge=None)
    smoke, rejudge = Calls(), Calls()
    files, manifest = candidate(tmp_path, "b", "rejected", ["below the baseline"])
    bundle = release(
        registry, MODEL, files, manifest, smoke=smoke, expected_champion=1, rejudge=rejudge, render=render
    )
    assert smoke.calls == [] and rejudge.calls == []
    got, _ = stored(registry, bundle.version)
    assert got["smoke_test"] == {"state": "not_run"}
    assert got["gate"] == {"verdict": "rejected", "reasons": ["below the baseline"]}
    assert registry.aliases(MODEL) == {"champion": 1, "latest": 1}


def test_a_failed_smoke_test_rejects_the_version_saying_why_and_keeps_the_champion(registry, tmp_path):
    release(registry, MODEL, *candidate(tmp_path, "a"), smoke=None, expected_champion=None, rejudge=None)
    smoke = Calls({"passed": False, "reason": "ImportError: no module named keras"})
    files, manifest = candidate(tmp_path, "b", reasons=["a note the gate kept"])
    bundle = release(
        registry, MODEL, files, manifest, smoke=smoke, expected_champion=1, rejudge=None, render=render
    )
    got, report = stored(registry, bundle.version)
    assert got["smoke_test"] == {
        "state": "failed",
        "passed": False,
        "reason": "ImportError: no module named keras",
    }
    assert got["gate"] == {
        "verdict": "rejected",
        "promoted": False,
        "reasons": [
            "a note the gate kept",
            "serving smoke test failed in a fresh process: ImportError: no module named keras",
        ],
    }
    assert json.loads(report) == {"gate": got["gate"], "champion": None, "smoke": got["smoke_test"]}
    assert registry.aliases(MODEL) == {"champion": 1, "latest": 1}


def test_a_moved_champion_without_rejudge_rejects_the_candidate_naming_the_move(registry, tmp_path):
    release(registry, MODEL, *candidate(tmp_path, "a"), smoke=None, expected_champion=None, rejudge=None)
    bundle = release(
        registry,
        MODEL,
        *candidate(tmp_path, "b"),
        smoke=Calls(passed()),
        expected_champion=None,
        rejudge=None,
        render=render,
    )
    got, report = stored(registry, bundle.version)
    moved = str(ChampionMoved(MODEL, None, 1))
    assert got["gate"] == {
        "verdict": "rejected",
        "promoted": False,
        "reasons": [f"{moved}; nothing here can compare it with the new champion"],
    }
    assert got["smoke_test"]["state"] == "passed"
    assert json.loads(report) == {"gate": got["gate"], "champion": None, "smoke": got["smoke_test"]}
    assert registry.aliases(MODEL) == {"champion": 1, "latest": 1}


def test_a_moved_champion_is_judged_again_and_a_win_is_promoted_with_the_new_comparison(registry, tmp_path):
    release(registry, MODEL, *candidate(tmp_path, "a"), smoke=None, expected_champion=None, rejudge=None)
    release(registry, MODEL, *candidate(tmp_path, "b"), smoke=None, expected_champion=1, rejudge=None)
    rejudge = Calls(verdict(True, 2))
    bundle = release(
        registry,
        MODEL,
        *candidate(tmp_path, "c"),
        smoke=None,
        expected_champion=1,
        rejudge=rejudge,
        render=render,
    )
    assert rejudge.calls == [2]
    got, report = stored(registry, bundle.version)
    assert got["gate"] == {"verdict": "promoted", "reasons": [], "against": 2}  # the new comparison's
    assert got["champion"] == {"version": 2, "score": 0.5}
    assert json.loads(report) == {
        "gate": got["gate"],
        "champion": got["champion"],
        "smoke": got["smoke_test"],
    }
    assert registry.aliases(MODEL) == {"champion": 3, "latest": 3}


def test_a_moved_champion_that_wins_the_new_comparison_keeps_its_place(registry, tmp_path):
    release(registry, MODEL, *candidate(tmp_path, "a"), smoke=None, expected_champion=None, rejudge=None)
    rejudge = Calls(verdict(False, 1, "below v1"))
    bundle = release(
        registry,
        MODEL,
        *candidate(tmp_path, "b"),
        smoke=None,
        expected_champion=None,
        rejudge=rejudge,
        render=render,
    )
    assert rejudge.calls == [1]
    got, report = stored(registry, bundle.version)
    moved = str(ChampionMoved(MODEL, None, 1))
    assert got["gate"] == {
        "verdict": "rejected",
        "promoted": False,
        "reasons": ["below v1", f"{moved}: judged again against v1 and rejected"],
        "against": 1,
    }
    assert got["champion"] == {"version": 1, "score": 0.5}
    assert json.loads(report) == {
        "gate": got["gate"],
        "champion": got["champion"],
        "smoke": got["smoke_test"],
    }
    assert registry.aliases(MODEL) == {"champion": 1, "latest": 1}


def test_a_champion_that_moves_again_during_the_new_comparison_is_compared_in_turn(registry, tmp_path):
    release(registry, MODEL, *candidate(tmp_path, "a"), smoke=None, expected_champion=None, rejudge=None)

    def another_publisher_wins(current):
        release(
            registry, MODEL, *candidate(tmp_path, "b"), smoke=None, expected_champion=current, rejudge=None
        )
        return verdict(True, current)

    rejudge = Calls(another_publisher_wins, lambda current: verdict(True, current))
    bundle = release(
        registry, MODEL, *candidate(tmp_path, "c"), smoke=None, expected_champion=None, rejudge=rejudge
    )
    assert bundle.version == 2 and rejudge.calls == [1, 3]
    assert stored(registry, 2)[0]["champion"] == {"version": 3, "score": 0.5}
    assert registry.aliases(MODEL) == {"champion": 2, "latest": 3}


def test_a_champion_that_disappeared_is_named_no_champion(registry, tmp_path):
    rejudge = Calls(verdict(False, None, "no comparison"))
    bundle = release(
        registry, MODEL, *candidate(tmp_path, "a"), smoke=None, expected_champion=5, rejudge=rejudge
    )
    assert rejudge.calls == [None]
    reasons = stored(registry, bundle.version)[0]["gate"]["reasons"]
    assert reasons[-1] == f"{ChampionMoved(MODEL, 5, None)}: judged again against no champion and rejected"
    assert registry.aliases(MODEL) == {}


def test_a_rejection_keeps_the_gates_other_fields_and_works_without_earlier_reasons(registry, tmp_path):
    files = bundle_files(tmp_path / "src" / "a", "a")
    gate = {"verdict": "promoted", "rules": [{"rule": "margin", "passed": True}]}  # no reasons recorded
    smoke = Calls({"passed": False, "reason": "timeout"})
    bundle = release(
        registry,
        MODEL,
        files,
        {"created_at": "a", "gate": gate},
        smoke=smoke,
        expected_champion=None,
        rejudge=None,
    )
    assert stored(registry, bundle.version)[0]["gate"] == {
        "verdict": "rejected",
        "promoted": False,
        "rules": [{"rule": "margin", "passed": True}],
        "reasons": ["serving smoke test failed in a fresh process: timeout"],
    }
    assert registry.aliases(MODEL) == {}
