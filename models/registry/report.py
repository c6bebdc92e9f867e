"""What a published bundle says about itself: the manifest, report.md and the two plots."""

from __future__ import annotations

import datetime as dt
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from models.config import CLASS_NAMES, PipelineConfig
from models.dataset.arrays import DatasetInfo

PACKAGES = (
    "tensorflow-cpu",
    "tensorflow",
    "keras",
    "numpy",
    "pandas",
    "pyarrow",
    "prefect",
    "yfinance",
)


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def build_manifest(
    *,
    config: PipelineConfig,
    dataset: DatasetInfo,
    source: dict,
    training: dict,
    metrics: dict,
    baselines: dict,
    champion: dict | None,
    verdict: dict,
    diagnoses: list[dict],
    flow_run_id: str | None,
) -> dict:
    """Every field DESIGN.md's artifact contract lists, except version and files (set at publish)."""
    return {
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "source": source,
        "synthetic_data": bool(source.get("synthetic")),
        "tickers": list(dataset.tickers),
        "features": list(dataset.features),
        "window": dataset.window,
        "horizon": dataset.horizon,
        "labels": {
            "rule": dataset.label_rule["rule"],
            "definition": (
                "r = adj_close[t+h] / adj_close[t] - 1; up if r > T, down if r < -T, else range_bound; "
                + ("T = theta" if dataset.label_rule["rule"] == "fixed" else "T = k * sigma_t * sqrt(h)")
            ),
            "theta": dataset.theta if dataset.label_rule["rule"] == "fixed" else None,
            "k": dataset.theta if dataset.label_rule["rule"] == "volatility" else None,
            "scale": dataset.theta,
            "balanced_on_train": dataset.label_rule["balanced_on_train"],
            "volatility_window": dataset.label_rule["volatility_window"],
            "horizon": dataset.horizon,
            "classes": list(CLASS_NAMES),
            "encoding": "integer class ids in the order of `classes`",
        },
        "splits": dataset.splits,
        "split_sizes": dataset.sizes,
        "class_shares": dataset.class_shares,
        "leakage_audit": dataset.audit,
        "data_fingerprint": dataset.fingerprint,
        # The data actually used (per-ticker first/last date and rows, drops, age), next to the
        # config that asked for it: see models.prices.lineage.data_lineage.
        "data": dataset.data,
        "data_quality": dict(dataset.data_quality),
        "config": config.model_dump(mode="json"),
        "training": training,
        "metrics": metrics,
        "baselines": baselines,
        "champion": champion,
        "gate": verdict,
        "diagnoses": diagnoses,
        "package_versions": package_versions(),
        "git_commit": git_commit(),
        "flow_run_id": flow_run_id,
    }


def render_report(manifest: dict) -> str:
    """A markdown report of one run for people: data, class balance, metrics vs baselines, verdict."""
    m, b, gate = manifest["metrics"], manifest["baselines"], manifest["gate"]
    lines = [
        f"# {manifest.get('model', 'model')} — {gate['verdict'].upper()}",
        "",
    ]
    if manifest.get("synthetic_data"):
        lines += [f"> **Synthetic data.** {manifest['source'].get('notice', '')}", ""]
    lines += [
        f"- source: `{manifest['source']['kind']}`; tickers: {', '.join(manifest['tickers'])}",
        f"- features: {', '.join(manifest['features'])}; window {manifest['window']}, horizon {manifest['horizon']}, labels {manifest['labels']['rule']} (scale {manifest['labels']['scale']:.4g})",
        (
            "- splits of the published model (the most recent walk-forward fold): "
            if manifest.get("evaluation")
            else "- splits: "
        )
        + "; ".join(
            f"{s} {r[0]}..{r[1]} ({manifest['split_sizes'][s]} windows)"
            for s, r in manifest["splits"].items()
        ),
        f"- data fingerprint: `{manifest['data_fingerprint'][:16]}`",
        *_quality_lines(manifest.get("data_quality") or {}),
        "",
        *render_data(manifest.get("data") or {}),
        "## Class balance",
        "",
        "| split | " + " | ".join(CLASS_NAMES) + " |",
        "|---|" + "---|" * len(CLASS_NAMES),
    ]
    for split, shares in manifest["class_shares"].items():
        lines.append(f"| {split} | " + " | ".join(f"{shares[c]:.1%}" for c in CLASS_NAMES) + " |")
    lines += [
        "",
        "## Test metrics vs baselines"
        + (" (pooled out-of-sample windows of every fold)" if manifest.get("evaluation") else ""),
        "",
        "| model | accuracy | balanced accuracy |",
        "|---|---|---|",
    ]
    lines.append(f"| **this model** | {m['accuracy']:.4f} | {m['balanced_accuracy']:.4f} |")
    for name, base in b.items():
        lines.append(f"| {name} | {base['accuracy']:.4f} | {base['balanced_accuracy']:.4f} |")
    c = manifest.get("champion")
    if c and "compared" not in c:  # holdout: the champion on the same test split
        lines.append(f"| champion v{c['version']} | {c['accuracy']:.4f} | {c['balanced_accuracy']:.4f} |")
    elif c:  # walk-forward: on the windows out of sample for both (see the gate's champion rule)
        lines.append(
            f"| champion v{c['version']} | | "
            + (
                f"{c['balanced_accuracy']:.4f} vs this model's {c['ours']:.4f} on {c['windows']} common "
                "out-of-sample windows |"
                if c.get("compared")
                else f"not compared: {c['reason']} |"
            )
        )
    lines += [
        "",
        f"macro-F1 {m['macro_f1']:.4f}, log loss {m.get('log_loss', float('nan')):.4f}",
        "",
    ]
    if manifest.get("evaluation", {}).get("scheme") == "walk_forward":
        lines += walk_forward_lines(manifest["evaluation"])
    lines += ["## Gate", "", f"**{gate['verdict']}**", ""]
    lines += [f"- {r}" for r in gate["reasons"]] or ["- every check passed"]
    if gate.get("rules"):
        lines += ["", "| rule | counts | passed | detail |", "|---|---|---|---|"]
        for r in gate["rules"]:
            lines.append(
                f"| {r['rule']}{' ' + r['against'] if r.get('against') else ''} | "
                f"{'yes' if r['criterion'] else 'reported only'} | {'yes' if r['passed'] else 'NO'} | "
                f"{r['message']} |"
            )
    smoke = manifest.get("smoke_test")
    if smoke:
        lines += ["", f"Serving smoke test: **{smoke.get('state')}**"]
    if manifest["diagnoses"]:
        lines += ["", "## Diagnoses", ""]
        lines += [
            f"- `{d['code']}`: {d['message']} **Fix:** {d['suggestion']}" for d in manifest["diagnoses"]
        ]
    lines += ["", "![curves](curves.png)", "", "![confusion](confusion.png)", ""]
    return "\n".join(lines)


def data_lines(data: dict) -> list[tuple[str, str]]:
    """The data a run used as (topic, text) lines: range and tickers, each dropped ticker and why,
    and the data's age when it ends before the last closed session (empty when unknown).

    Shared by report.md and the command line's summary, so both say the same thing.
    """
    used = data.get("tickers") or {}
    if not used:
        return []
    store = (data.get("store") or {}).get("key")
    count = f"{len(used)} ticker{'s' if len(used) != 1 else ''}"
    prices = f"{data.get('first_date')}..{data.get('last_date')}, {count}: {', '.join(used)}"
    prices += f" (store {store})" if store else ""
    if data.get("sessions_before_first"):
        start = (data.get("asked") or {}).get("start")
        prices += f"; asked from {start}: the source has nothing earlier"
    lines = [("prices", prices)]
    lines += [("dropped", why) for why in (data.get("quarantined") or {}).values()]  # each names its ticker
    age, closed = data.get("age_sessions"), data.get("last_closed_session")
    if age:
        why = "as asked: end is set (historical mode)" if data.get("historical") else "the source lags"
        lines.append(
            (
                "data age",
                f"ends {data['last_date']}, {age} session(s) before the last closed session {closed} ({why})",
            )
        )
    return lines


def render_data(data: dict) -> list[str]:
    """The report's "Data" section: what was used per ticker, what was dropped and why, the age."""
    if not data.get("tickers"):
        return []
    out = ["## Data", ""]
    out += [f"- {topic}: {text}" for topic, text in data_lines(data)]
    out += ["", "| ticker | first date | last date | rows |", "|---|---|---|---|"]
    for ticker, used in data["tickers"].items():
        out.append(f"| {ticker} | {used['first_date']} | {used['last_date']} | {used['rows']} |")
    return [*out, ""]


def _quality_lines(quality: dict) -> list[str]:
    """The report's line on missing sessions and zero-volume prints (nothing when there were none)."""
    if not quality.get("missing_sessions") and not quality.get("zero_volume_sessions"):
        return []
    return [
        f"- data: {quality.get('missing_sessions', 0)} missing session(s): "
        f"{quality.get('windows_dropped_at_gaps', 0)} window(s), {quality.get('labels_dropped_at_gaps', 0)} "
        f"label(s) and {quality.get('rows_dropped_after_gaps', 0)} warm-up row(s) dropped so none spans "
        f"a gap; {quality.get('zero_volume_sessions', 0)} zero-volume session(s) read as missing volume"
    ]


def plot_curves(history: dict[str, list[float]], path: Path, walk_forward: dict | None = None) -> Path:
    """Loss and accuracy per epoch of the published model; with walk-forward evidence, a third
    panel of each fold's out-of-sample balanced accuracy, the model against every baseline."""
    panels = 3 if walk_forward else 2
    fig = Figure(figsize=(4.5 * panels, 3.5))
    axes = fig.subplots(1, panels)
    for ax, key in zip(axes[:2], ("loss", "accuracy"), strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + key)
            if values:
                ax.plot(np.arange(1, len(values) + 1), values, style, label=(prefix or "train_") + key)
        ax.set_xlabel("epoch")
        ax.set_title(f"{key} (published model)" if walk_forward else key)
        ax.legend()
    if walk_forward:
        ax = axes[2]
        folds = walk_forward["folds"]
        x = [f["fold"] for f in folds]
        for name in folds[0]["baselines"]:
            ax.plot(x, [f["baselines"][name] for f in folds], "--", marker=".", label=name)
        ax.plot(x, [f["model"] for f in folds], "-", marker="o", color="black", linewidth=2, label="model")
        ax.set_xticks(x, [f"{f['fold']}\n{f['test'][0][:7]}" for f in folds])
        ax.set_xlabel("fold (test period start)")
        ax.set_title("out-of-sample balanced accuracy")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def plot_confusion(matrix: list[list[int]], path: Path) -> Path:
    cm = np.asarray(matrix)
    fig = Figure(figsize=(4, 3.6))
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES)
    ax.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="black")
    ax.set_title("test confusion")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def _pct(value: float) -> str:
    return "n/a" if value is None or value != value else f"{value:.4f}"


def _bounds(interval: dict) -> str:
    return f"[{_pct(interval['lower'])}, {_pct(interval['upper'])}]"


def evaluation_section(config: PipelineConfig, evaluation: dict) -> dict:
    """The manifest's `evaluation` section of a walk-forward run: how it was judged, per fold and
    pooled, with the intervals, direction skill, per-ticker rows, sample size and what it means."""
    evidence = evaluation["walk_forward"]
    runs = {r["fold"]: r for r in evaluation.get("fold_runs", [])}
    folds = [
        {**f, **{k: v for k, v in runs.get(f["fold"], {}).items() if k != "fold"}} for f in evidence["folds"]
    ]
    last = folds[-1]
    return {
        "scheme": "walk_forward",
        "folds": len(folds),
        "train_window": config.evaluation.train_window,
        "test_fraction": config.evaluation.test_fraction,
        "published_model": f"fold {last['fold']} (the most recent): trained on {last['train'][0]}..{last['train'][1]}, "
        f"early-stopped on its validation period, tested on {last['test'][0]}..{last['test'][1]}",
        "fold_results": folds,
        "pooled": {
            "model": evidence["model"],
            "baselines": evidence["baselines"],
            "strongest_baseline": evidence["strongest_baseline"],
        },
        "direction_skill": evidence["direction"]["difference"],
        "per_ticker": evidence["per_ticker"],
        "carried_by": evidence["carried_by"],
        "sample": evidence["sample"],
        "meaning": verdict_meaning(evaluation),
    }


def verdict_meaning(evaluation: dict) -> str:
    """What the walk-forward verdict says, and does not say, in plain words."""
    e = evaluation["walk_forward"]
    sample, model = e["sample"], e["model"]
    strongest = e["strongest_baseline"]
    diff = e["baselines"][strongest]["difference"]
    conf = f"{diff['confidence']:.0%}"
    size = (
        f"{sample['windows']} out-of-sample windows from {len(e['folds'])} walk-forward folds "
        f"({sample['sessions']} sessions, {sample['tickers']} tickers; worth about "
        f"{sample['effective_windows']:.0f} independent windows, {sample['label_periods']:.0f} "
        "non-overlapping label periods)"
    )
    head = (
        f"On {size}, the model's balanced accuracy is {model['balanced_accuracy']:.4f}; the strongest "
        f"simple alternative, {strongest}, scores {e['baselines'][strongest]['balanced_accuracy']:.4f}: "
        f"a difference of {diff['estimate']:+.4f} with a one-sided {conf} lower bound of {diff['lower']:+.4f}."
    )
    if evaluation["gate"]["verdict"] == "promoted":
        body = (
            " PROMOTED means it beat every simple alternative on data it never trained on, by more than "
            "the block bootstrap attributes to chance, and did not lose to the champion on their common "
            "out-of-sample windows. It does not mean the edge is large, that it will persist, or that it "
            "pays after costs: it is a statement about past windows of this universe and label rule."
        )
    else:
        body = (
            " REJECTED means this evidence does not show the model doing better than a simple alternative "
            "beyond chance (or it failed a guard or lost to the champion): see the gate's reasons. It does "
            "not prove the model useless, only that nothing here shows it is."
        )
    carried = e.get("carried_by") or []
    tail = (
        f" The result rests on {', '.join(carried)}: without it the edge over {strongest} falls to at most "
        "half of what it is."
        if carried
        else ""
    )
    return head + body + tail


def walk_forward_lines(section: dict) -> list[str]:
    """The report.md part of a walk-forward evaluation."""
    pooled, sample = section["pooled"], section["sample"]
    conf = f"{sample['confidence']:.0%}"
    two_sided = f"{2 * sample['confidence'] - 1:.0%}"
    names = list(pooled["baselines"])
    lines = [
        "## Walk-forward evaluation",
        "",
        section["meaning"],
        "",
        f"- {section['folds']} folds, {section['train_window']} train window, the last "
        f"{section['test_fraction']:.0%} of the sessions tested out of sample",
        f"- published model: {section['published_model']}",
        f"- sample: {sample['windows']} windows over {sample['sessions']} sessions and {sample['tickers']} "
        f"tickers; effective number of independent windows ~{sample['effective_windows']:.0f}; "
        f"non-overlapping label periods {sample['label_periods']:.0f}",
        f"- intervals: moving-block bootstrap over sessions (blocks of {sample['block_sessions']} sessions, "
        f"every ticker of a drawn date together, {sample['bootstrap_samples']} resamples); bounds are "
        f"one-sided {conf} ({two_sided} two-sided)",
        "",
        "### Pooled out of sample",
        "",
        f"| model | balanced accuracy | {two_sided} interval | model minus it | {conf} lower bound |",
        "|---|---|---|---|---|",
        f"| **this model** | {pooled['model']['balanced_accuracy']:.4f} | {_bounds(pooled['model']['interval'])} | | |",
    ]
    for name in names:
        b = pooled["baselines"][name]
        mark = " (strongest)" if name == pooled["strongest_baseline"] else ""
        lines.append(
            f"| {name}{mark} | {b['balanced_accuracy']:.4f} | {_bounds(b['interval'])} | "
            f"{b['difference']['estimate']:+.4f} | {b['difference']['lower']:+.4f} |"
        )
    lines += [
        "",
        "### Fold by fold",
        "",
        "| fold | train | test | windows | model | "
        + " | ".join(names)
        + " | strongest | model minus strongest |",
        "|---|---|---|---|---|" + "---|" * len(names) + "---|---|",
    ]
    for f in section["fold_results"]:
        interval = f.get("interval")
        bound = f" (lower {interval['lower']:+.4f})" if interval else ""
        lines.append(
            f"| {f['fold']} | {f['train'][0]}..{f['train'][1]} | {f['test'][0]}..{f['test'][1]} | {f['windows']} | "
            f"{f['model']:.4f} | "
            + " | ".join(f"{f['baselines'][n]:.4f}" for n in names)
            + f" | {f['strongest']} | {f['difference']:+.4f}{bound} |"
        )
    d = section["direction_skill"]
    lines += [
        "",
        "### Direction skill",
        "",
        f"On the {d['windows']} windows where the model said up or down and the price moved beyond the "
        f"threshold: sign accuracy {_pct(d['model'])} vs {_pct(d['baseline'])} for always saying the "
        f"train-majority direction ({d['baseline_class']}); difference {_pct(d['estimate'])}, {conf} "
        f"lower bound {_pct(d['lower'])}.",
        "",
        "### Per ticker",
        "",
        f"| ticker | windows | model | {pooled['strongest_baseline']} | difference | pooled difference without it |",
        "|---|---|---|---|---|---|",
    ]
    for r in section["per_ticker"]:
        lines.append(
            f"| {r['ticker']} | {r['windows']} | {r['model']:.4f} | {r['baseline']:.4f} | "
            f"{r['difference']:+.4f} | {r['difference_without']:+.4f} |"
        )
    if section["carried_by"]:
        lines += ["", f"**One ticker carries the result:** {', '.join(section['carried_by'])}."]
    else:
        lines += ["", "No single ticker carries the result (removing any one keeps more than half the edge)."]
    lines.append("")
    return lines
