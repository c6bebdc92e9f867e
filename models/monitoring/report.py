"""What the nightly monitoring says to people: the scorecard, drift and predictions in markdown.

The same words serve the Prefect artifacts (`scorecard`, `nightly-report`), the command line and the
README's examples.
"""

from __future__ import annotations

from models.training.gate import direction_baseline_name


def _num(value: float | None, signed: bool = False) -> str:
    if value is None or value != value:
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def verdict(summary: dict) -> str:
    if summary.get("status") != "judged":
        return "not judged"
    return "DEGRADED" if summary.get("degraded") else "healthy"


def scorecard_markdown(summary: dict) -> str:
    """The scorecard artifact: the window, every figure with its bounds, the verdict and why."""
    name = f"{summary['model']}/{summary.get('version', '?')}"
    if summary.get("status") == "no_champion":
        return f"# Scorecard: {summary['model']}\n\n{summary['message']}.\n"
    lines = [f"# Scorecard: {name} — {verdict(summary)}", ""]
    origins = ", ".join(f"{n} {k}" for k, n in (summary.get("origins") or {}).items()) or "none"
    lines += [
        f"- window: the last {summary['window_sessions']} sessions with a matured label"
        + (
            f": {summary['sessions']} session(s), {summary['first']}..{summary['last']}, "
            f"{summary['windows']} windows of {summary['tickers']} ticker(s) ({origins})"
            if summary.get("sessions")
            else ": none yet"
        ),
        f"- trained until {summary['trained_until']}; every session scored lies after it; "
        f"{summary.get('scored_total', 0)} row(s) of {name} in the scorecard",
    ]
    if summary.get("status") != "judged" and summary.get("status") != "no_baselines":
        return "\n".join([*lines, "", f"{summary['message']}.", *_links(summary)]) + "\n"
    conf = summary["confidence"]
    champion = summary["champion"]
    lines += [
        "",
        f"| | accuracy | balanced accuracy [{2 * conf - 1:.0%} interval] | champion minus it "
        f"[one-sided {conf:.0%} bounds] |",
        "|---|---|---|---|",
        f"| **champion** | {_num(champion['accuracy'])} | {_num(champion['balanced_accuracy'])} "
        f"[{_num(champion['interval']['lower'])}, {_num(champion['interval']['upper'])}] | |",
    ]
    strongest = summary.get("strongest_baseline")
    for base, b in sorted(summary.get("baselines", {}).items()):
        d = b["difference"]
        tag = " (strongest)" if base == strongest else ""
        lines.append(
            f"| {base}{tag} | {_num(b['accuracy'])} | {_num(b['balanced_accuracy'])} "
            f"[{_num(b['interval']['lower'])}, {_num(b['interval']['upper'])}] | "
            f"{_num(d['estimate'], True)} [{_num(d['lower'], True)}, {_num(d['upper'], True)}] |"
        )
    direction = summary.get("direction_skill") or {}
    if direction.get("baseline_class"):
        lines += [
            "",
            f"- direction skill: sign accuracy {_num(direction['model'])} vs {_num(direction['baseline'])} "
            f"{direction_baseline_name(direction['baseline_class'])} on {direction['windows']} moves: "
            f"{_num(direction['estimate'], True)} (one-sided {conf:.0%} bounds "
            f"{_num(direction['lower'], True)}, {_num(direction['upper'], True)})",
        ]
    lines.append(
        f"- sample: ~{summary['effective_windows']:.0f} effective windows of {summary['windows']}; "
        f"bootstrap blocks of {summary['block_sessions']} sessions, {summary['bootstrap_samples']} resamples"
    )
    lines.append(f"- out-of-range inputs: {summary.get('out_of_range', 0)} of {summary['windows']} windows")
    if summary.get("status") == "no_baselines":
        return "\n".join([*lines, "", f"{summary['message']}.", *_links(summary)]) + "\n"
    lines += ["", f"**{verdict(summary)}**" + (":" if summary["reasons"] else ": " + _healthy(summary))]
    lines += [f"- {reason}" for reason in summary["reasons"]]
    edge = summary.get("edge") or {}
    if "required" in edge and not edge.get("judged"):
        lines += [
            "",
            f"Edge check not judged: the window holds ~{edge['live_effective_windows']:.0f} effective "
            f"windows; telling a loss of the edge {name} was promoted with ({_num(edge['estimate'], True)} "
            f"over {edge['against']}, lower bound {_num(edge['lower'], True)}) from noise needs "
            f"~{edge['required']:.0f}. Widen monitoring.window_sessions or the universe.",
        ]
    return "\n".join([*lines, *_links(summary)]) + "\n"


def _healthy(summary: dict) -> str:
    strongest = summary["strongest_baseline"]
    d = summary["baselines"][strongest]["difference"]
    conf = f"{summary['confidence']:.0%}"
    return (
        f"not below {strongest} beyond the interval (champion minus {strongest} "
        f"{_num(d['estimate'], True)}, one-sided {conf} upper bound {_num(d['upper'], True)})"
        + (
            f", and its edge holds (lower bound {_num(d['lower'], True)})"
            if not (summary.get("edge") or {}).get("lost")
            else f"; its edge is not shown on this window (lower bound {_num(d['lower'], True)})"
        )
    )


def _links(summary: dict) -> list[str]:
    out = []
    if summary.get("plot"):
        out.append(f"\nPlot: {summary['plot']}")
    if summary.get("scorecard"):
        out.append(f"Scorecard: {summary['scorecard']}")
    return out


def drift_markdown(found: dict) -> str:
    """The nightly report's drift section."""
    if found.get("status") != "checked":
        return f"## Drift\n\n{found.get('message') or 'no prices to compare'}.\n"
    lines = [
        f"## Drift: the last {found['sessions']} sessions ({found['first']}..{found['last']}, "
        f"{found['rows']} rows) against {found['model']}/{found['version']}'s train distribution",
        "",
        "| feature | mean shift (train stds) | PSI (train-fitted bins) | drifted |",
        "|---|---|---|---|",
    ]
    for entry in found["features"]:
        psi = "n/a (no bins stored)" if entry["psi"] is None else f"{entry['psi']:.4f}"
        lines.append(
            f"| {entry['feature']} | {entry['mean_shift']:+.3f} | {psi} | {'**yes**' if entry['drifted'] else 'no'} |"
        )
    t = found["thresholds"]
    lines += [
        "",
        f"Drifted (PSI > {t['psi']} or |mean shift| > {t['mean_shift']}): "
        + (", ".join(found["drifted"]) or "none")
        + ".",
    ]
    flagged = found.get("out_of_range") or {}
    if flagged:
        lines += [
            "",
            f"Out-of-range inputs (|z| > {found['out_of_range_z']:g} train stds), per ticker:",
            "",
            "| ticker | rows | of | features | max |z| |",
            "|---|---|---|---|---|",
            *(
                f"| {t} | {e['rows']} | {e['of']} | {', '.join(e['features'])} | {e['max_abs_z']:g} |"
                for t, e in flagged.items()
            ),
        ]
    else:
        lines.append(f"Out-of-range inputs (|z| > {found['out_of_range_z']:g} train stds): none.")
    return "\n".join(lines) + "\n"


def predictions_line(record: dict) -> str:
    """One sentence on the night's predictions file."""
    if record.get("status") == "no_champion":
        return f"{record['message']}."
    what = {
        "written": "written",
        "unchanged": "unchanged (same inputs: kept as written)",
        "kept": f"kept: written by {record['model']}/{record['version']}, which served that night",
    }[record["status"]]
    missing = record.get("missing") or {}
    tail = f"; no prediction for {len(missing)}: " + "; ".join(missing.values()) if missing else ""
    return (
        f"predictions for {record['night']} by {record['model']}/{record['version']}: {record['rows']} "
        f"ticker(s), {record['out_of_range']} out of range, {what} at {record['path']}{tail}"
    )


def scorecard_line(record: dict) -> str:
    if record.get("status") == "no_champion":
        return f"{record['message']}."
    notes = "; ".join(record.get("notes") or [])
    return (
        f"scorecard: {record['added']} row(s) added ({record['nightly']} nightly, {record['backfill']} backfill), "
        f"{record['total']} in all" + (f"; {notes}" if notes else "")
    )


def summary_line(summary: dict) -> str:
    """One line: the verdict and the champion against the strongest baseline on the window."""
    if summary.get("status") == "no_champion":
        return summary["message"]
    name = f"{summary['model']}/{summary['version']}"
    if summary.get("status") not in ("judged", "no_baselines"):
        return f"{name} {verdict(summary)}: {summary['message']}"
    champion = summary["champion"]["balanced_accuracy"]
    text = f"{name} {verdict(summary)} over {summary['sessions']} sessions: balanced accuracy {champion:.4f}"
    strongest = summary.get("strongest_baseline")
    if strongest:
        d = summary["baselines"][strongest]["difference"]
        text += (
            f" vs {strongest} {summary['baselines'][strongest]['balanced_accuracy']:.4f} "
            f"({d['estimate']:+.4f}, bounds {d['lower']:+.4f}..{d['upper']:+.4f})"
        )
    return text


def nightly_markdown(
    model: str, night: str, predictions: dict, scored: dict, summary: dict, drift: dict, decision: str
) -> str:
    """The nightly report: predictions, scorecard, drift and what the run decided about retraining."""
    return "\n".join(
        [
            f"# Nightly {night}: {model}",
            "",
            f"- {predictions_line(predictions)}",
            f"- {scorecard_line(scored)}",
            f"- {summary_line(summary)}",
            f"- retrain: {decision}",
            "",
            scorecard_markdown(summary).replace("# Scorecard", "## Scorecard", 1),
            drift_markdown(drift),
        ]
    )


def drift_line(found: dict) -> str:
    """One line: the largest shift, what drifted, what was out of range."""
    if found.get("status") != "checked" or not found.get("features"):
        return found.get("message") or "nothing to compare"
    scored = [e for e in found["features"] if e["psi"] is not None]
    top = max(scored, key=lambda e: e["psi"]) if scored else None
    flagged = found.get("out_of_range") or {}
    return (
        f"drift over {found['sessions']} sessions: "
        + (f"largest PSI {top['psi']:.3f} ({top['feature']}); " if top else "no train bins stored; ")
        + f"drifted: {', '.join(found['drifted']) or 'none'}; out of range: "
        + (", ".join(f"{t} {e['rows']} row(s)" for t, e in flagged.items()) or "none")
    )
