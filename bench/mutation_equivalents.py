"""Surviving mutants that change no behaviour (equivalent mutants), each with the reason.

Keyed by (function, the mutant's -/+ diff lines as `python -m bench.mutate` prints them), so an
entry follows the code as it moves and goes stale, visibly, when the line itself changes.
bench/MUTATION.md explains each group.
"""

from __future__ import annotations

EQUIVALENT: dict[tuple[str, str], str] = {}
