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
        "- splits: "
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
        "## Test metrics vs baselines",
        "",
        "| model | accuracy | balanced accuracy |",
        "|---|---|---|",
    ]
    lines.append(f"| **this model** | {m['accuracy']:.4f} | {m['balanced_accuracy']:.4f} |")
    for name, base in b.items():
        lines.append(f"| {name} | {base['accuracy']:.4f} | {base['balanced_accuracy']:.4f} |")
    if manifest.get("champion"):
        c = manifest["champion"]
        lines.append(f"| champion v{c['version']} | {c['accuracy']:.4f} | {c['balanced_accuracy']:.4f} |")
    lines += [
        "",
        f"macro-F1 {m['macro_f1']:.4f}, log loss {m.get('log_loss', float('nan')):.4f}",
        "",
    ]
    lines += ["## Gate", "", f"**{gate['verdict']}**", ""]
    lines += [f"- {r}" for r in gate["reasons"]] or ["- every check passed"]
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


def plot_curves(history: dict[str, list[float]], path: Path) -> Path:
    fig = Figure(figsize=(9, 3.5))
    for ax, key in zip(fig.subplots(1, 2), ("loss", "accuracy"), strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + key)
            if values:
                ax.plot(np.arange(1, len(values) + 1), values, style, label=(prefix or "train_") + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
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
