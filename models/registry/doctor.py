"""`python -m models doctor`: find, and with `--fix` repair, what is wrong in a registry.

Per model it checks:

- `aliases.json`: a JSON object of alias names to integer versions (`invalid` otherwise);
- every alias: points at a version that exists and verifies (`dangling` otherwise);
- every version: verifies (`unverifiable`: a missing, altered, unlisted or linked file, a manifest
  naming another folder or an unsafe file name...); in an object store the stored objects are
  downloaded and checked, not a cached copy;
- the model's folder: leftovers of killed writers (`leftover`: `.tmp-*`, `.trash-*`, temporary
  files, object-store versions without a manifest) and anything else that is not a version, the
  delivery records (`deliveries/`), `aliases.json`, the lock or the live scorecard
  (`scorecard.parquet`, `scorecard.png`: `unexpected`).

`--fix` takes the model's publish lock (so no publisher is mid-write), then removes leftovers,
rewrites `aliases.json` from its valid entries, points a dangling or lost `champion` and `latest`
at the newest version that verifies and was promoted, and drops other dangling aliases. It never
deletes a version: an unverifiable or unexpected entry stays for a person to inspect.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from models.registry.bundle import ALIASES, RegistryError, parse_aliases, salvage_aliases
from models.registry.local import Registry

FIXED_ALIASES = ("champion", "latest")


@dataclass
class Finding:
    """One problem: what it concerns, its kind, the evidence, and what `--fix` did about it."""

    subject: str  # updown/aliases.json, updown@latest, updown/3, updown/.tmp-4-…
    problem: str  # invalid, dangling, unverifiable, leftover, unexpected
    detail: str
    fixable: bool
    fixed: str | None = None

    def line(self) -> str:
        if self.fixed is not None:
            return f"{self.subject}: fixed {self.problem}: {self.fixed}"
        return f"{self.subject}: {self.problem}: {self.detail}"


@dataclass
class Report:
    models: int = 0
    versions: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def left(self) -> list[Finding]:
        return [f for f in self.findings if f.fixed is None]

    def summary(self, root: str, fix: bool) -> str:
        found = self.findings
        head = f"{self.models} model(s), {self.versions} version(s) checked in {root}: "
        if not found:
            return head + "no problems"
        fixed = len(found) - len(self.left)
        tail = f"{len(found)} problem(s)"
        if fix:
            return head + f"{tail}, {fixed} fixed, {len(self.left)} left"
        fixable = sum(f.fixable for f in found)
        return head + tail + (f", {fixable} fixable with --fix" if fixable else "")


def doctor(registry: Registry, model: str | None = None, fix: bool = False) -> Report:
    """Check one model (or every model) of `registry`; repair what can be repaired when `fix`."""
    names = [registry.require_model(model)] if model else registry.models()
    report = Report()
    for name in names:
        lock = registry._locked(name) if fix else contextlib.nullcontext()
        with lock:
            versions, findings = _diagnose(registry, name, fix)
        report.models += 1
        report.versions += versions
        report.findings.extend(findings)
    return report


def _diagnose(registry: Registry, model: str, fix: bool) -> tuple[int, list[Finding]]:
    findings: list[Finding] = []
    leftovers, strays = registry._scan(model)
    findings += [
        Finding(f"{model}/{name}", "leftover", "left by a writer that died (or one running now)", True)
        for name in leftovers
    ]
    findings += [
        Finding(
            f"{model}/{name}",
            "unexpected",
            "not a version, aliases.json, the lock or a scorecard file; left alone",
            False,
        )
        for name in strays
    ]
    versions = registry.versions(model)
    verdicts: dict[int, str] = {}  # verified versions -> gate verdict
    for version in versions:
        try:
            manifest = registry.check(f"{model}/{version}", fresh=True).manifest
        except (RegistryError, OSError) as err:
            findings.append(
                Finding(f"{model}/{version}", "unverifiable", _strip(str(err), f"{model}/{version}: "), False)
            )
            continue
        verdicts[version] = manifest.get("gate", {}).get("verdict", "promoted")
    promoted = [v for v, verdict in verdicts.items() if verdict == "promoted"]
    newest = max(promoted, default=None)

    raw = registry._aliases_raw(model)
    where = registry._aliases_location(model)
    table_finding, lost = None, []
    try:
        table = parse_aliases(raw, where, registry.repair_command(model)) if raw is not None else {}
    except RegistryError as err:
        table, lost = salvage_aliases(raw)
        detail = _strip(str(err), f"{where}: ").split("; repair it with")[0]
        table_finding = Finding(f"{model}/{ALIASES}", "invalid", detail, True)
        findings.append(table_finding)

    repaired = dict(table)
    alias_findings = []
    for alias, version in sorted(table.items()):
        if version in verdicts:
            continue
        reason = "it does not verify (see above)" if version in versions else "no such version"
        finding = Finding(f"{model}@{alias}", "dangling", f"points at {model}/{version}: {reason}", True)
        alias_findings.append(finding)
        del repaired[alias]
    for alias in FIXED_ALIASES:
        if alias not in repaired and newest is not None and (alias in table or table_finding is not None):
            repaired[alias] = newest
    findings += alias_findings

    if fix:
        if leftovers:
            registry._remove_leftovers(model)
            for finding in findings:
                if finding.problem == "leftover":
                    finding.fixed = "removed"
        if repaired != table or table_finding is not None:
            registry._write_aliases(model, repaired)
            for finding in alias_findings:
                alias = finding.subject.split("@", 1)[1]
                finding.fixed = (
                    f"now {repaired[alias]}, the newest version that verifies and was promoted "
                    f"({finding.detail})"
                    if alias in repaired
                    else f"removed ({finding.detail})"
                )
            if table_finding is not None:
                kept = ", ".join(f"{a}={v}" for a, v in sorted(repaired.items())) or "no aliases"
                dropped = f"; dropped {', '.join(lost)}" if lost else ""
                table_finding.fixed = f"rewritten with {kept}{dropped} (was: {table_finding.detail})"
    return len(versions), findings


def _strip(text: str, prefix: str) -> str:
    return text[len(prefix) :] if text.startswith(prefix) else text
