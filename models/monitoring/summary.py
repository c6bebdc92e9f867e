"""The scorecard's nightly summary: how the champion did on the last N matured sessions, and whether
it has degraded.

Over the rolling window (`monitoring.window_sessions`, default 60 sessions with a matured label) it
computes what the gate computes, the same way: accuracy and balanced accuracy of the champion and of
every baseline stored in its bundle (majority, persistence, class prior, volatility rule, linear
model), each (model - baseline) difference and the direction skill, with one-sided `gate.confidence`
bounds from the moving-block bootstrap over sessions (`models.training.bootstrap`: blocks of
`gate.block_sessions`, every ticker of a drawn session together, `gate.bootstrap_samples` resamples,
seed `gate.bootstrap_seed`).

**Degraded** (the `model.degraded` event; the next nightly retrains even on unchanged data) when
either holds on the window:

- `below`: the champion is below the strongest baseline beyond the interval: the one-sided upper
  bound of (champion - strongest baseline) balanced accuracy is below zero;
- `edge lost`: the gate's own rule fails on live sessions, the one-sided lower bound is at or below
  `gate.min_effect`, and the window holds enough evidence for that to mean something: at least the
  effective windows (`bootstrap.effective_windows`) a champion with the edge it was promoted with
  needs to pass the rule 95 times in 100, n_promoted x (2 x (E - L) / (E - min_effect))^2, where E
  and L are the gate's pooled edge and its lower bound and n_promoted the effective windows it was
  measured on. Below that the summary says how much evidence is missing instead of guessing: on a
  small universe a 60-session window cannot tell a +0.04 edge from none (see the README).

A healthy champion on a universe too small for its window therefore does not fire `edge lost` night
after night, and a champion whose signal stopped is caught once the window can show it.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from models.config import CLASS_NAMES, GateConfig, MonitoringConfig
from models.dataset.labels import RANGE_BOUND
from models.monitoring.scorecard import RULE_BASELINES
from models.monitoring.sessions import Champion
from models.training import bootstrap as bs

INDEX = {name: i for i, name in enumerate(CLASS_NAMES)}
ROLLING_POINTS = 250  # sessions drawn in scorecard.png, the most recent


def _ids(values: pd.Series) -> np.ndarray:
    return np.asarray([INDEX.get(v, -1) if isinstance(v, str) else -1 for v in values], dtype=np.int64)


def hits(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each window's (expected) correctness: the champion's call, each baseline's call (a draw from
    the class prior counts its realized class's share), for the baselines the rows carry."""
    y = _ids(frame["realized"])
    out = {"model": (_ids(frame["predicted"]) == y).astype(np.float64)}
    for name in RULE_BASELINES:
        column = frame[f"baseline_{name}"]
        if column.notna().all() and len(column):
            out[name] = (_ids(column) == y).astype(np.float64)
    prior = frame["baseline_class_prior"]
    if prior.notna().all() and len(prior):
        out["class_prior"] = prior.to_numpy(np.float64)
    return out


def _balanced(y: np.ndarray, hit: np.ndarray) -> float:
    present = [c for c in range(len(CLASS_NAMES)) if (y == c).any()]
    return float(np.mean([hit[y == c].mean() for c in present])) if present else float("nan")


def block_length(gate: GateConfig, horizon: int, sessions: int) -> int:
    return gate.block_sessions or bs.default_block(horizon, sessions)


def evidence(frame: pd.DataFrame, horizon: int, gate: GateConfig) -> dict:
    """Point estimates and bootstrap bounds of the champion and every baseline on these rows.

    Raises:
        ValueError: fewer sessions than two bootstrap blocks.
    """
    y = _ids(frame["realized"])
    correct = hits(frame)
    session, n_sessions = bs.session_index(frame["date"].to_numpy(dtype="datetime64[ns]"))
    block = block_length(gate, horizon, n_sessions)
    weights = bs.block_weights(n_sessions, block, gate.bootstrap_samples, gate.bootstrap_seed)
    conf = gate.confidence
    reps = {k: bs.balanced_accuracy_replicates(y, c, session, weights) for k, c in correct.items()}
    point = {k: _balanced(y, c) for k, c in correct.items()}
    ours = point["model"]
    baselines = {}
    for name in (n for n in correct if n != "model"):
        baselines[name] = {
            "accuracy": float(correct[name].mean()),
            "balanced_accuracy": point[name],
            "interval": bs.interval(point[name], reps[name], conf).as_dict(),
            "difference": bs.interval(ours - point[name], reps["model"] - reps[name], conf).as_dict(),
        }
    strongest = max(baselines, key=lambda n: baselines[n]["balanced_accuracy"]) if baselines else None

    predicted = _ids(frame["predicted"])
    moved = (y != RANGE_BOUND) & (predicted != RANGE_BOUND)
    direction = {"windows": int(moved.sum()), "baseline_class": None}
    if "direction_baseline" in frame and frame["direction_baseline"].notna().all() and moved.any():
        fallback = _ids(frame["direction_baseline"])
        model_hit = ((predicted == y) & moved).astype(np.float64)
        base_hit = ((fallback == y) & moved).astype(np.float64)
        n_moved = moved.sum()
        direction |= {
            "model": float(model_hit.sum() / n_moved),
            "baseline": float(base_hit.sum() / n_moved),
            "baseline_class": "/".join(sorted(set(frame["direction_baseline"]))),
            **bs.interval(
                float((model_hit.sum() - base_hit.sum()) / n_moved),
                bs.ratio_replicates(model_hit, moved, session, weights)
                - bs.ratio_replicates(base_hit, moved, session, weights),
                conf,
            ).as_dict(),
        }
    return {
        "champion": {
            "accuracy": float(correct["model"].mean()),
            "balanced_accuracy": ours,
            "interval": bs.interval(ours, reps["model"], conf).as_dict(),
        },
        "baselines": baselines,
        "strongest_baseline": strongest,
        "direction_skill": direction,
        "effective_windows": round(bs.effective_windows(correct["model"], session, weights), 1),
        "block_sessions": int(block),
        "bootstrap_samples": gate.bootstrap_samples,
        "confidence": conf,
    }


def as_of(scorecard: pd.DataFrame, version: int, night: dt.date | None) -> pd.DataFrame:
    """The version's rows as the scorecard held them on `night`: those recorded on or before it (rows
    are never changed, so a night's summary can be computed again later, identically)."""
    mine = scorecard.loc[scorecard["version"] == version]
    if night is not None:
        mine = mine.loc[mine["recorded_on"] <= pd.Timestamp(night)]
    return mine


def window_rows(
    scorecard: pd.DataFrame, version: int, sessions: int, night: dt.date | None = None
) -> pd.DataFrame:
    """The version's rows on its last `sessions` matured sessions (as held on `night`)."""
    mine = as_of(scorecard, version, night)
    days = np.unique(mine["date"].to_numpy(dtype="datetime64[ns]"))
    if len(days) > sessions:
        mine = mine.loc[mine["date"] >= pd.Timestamp(days[-sessions])]
    return mine.sort_values(["date", "ticker"], kind="stable").reset_index(drop=True)


def required_evidence(champion: Champion, gate: GateConfig) -> dict | None:
    """The effective windows a window needs before a lost edge is judged, from the edge the champion
    was promoted with (see the module docstring); None without a walk-forward evaluation."""
    promoted = champion.promoted_edge
    if promoted is None:
        return None
    edge = float(promoted["estimate"]) - gate.min_effect
    half = float(promoted["estimate"]) - float(promoted["lower"])
    measured_on = float((promoted.get("sample") or {}).get("effective_windows") or 0)
    if edge <= 0 or half <= 0 or measured_on <= 0:
        return None
    return {
        "against": promoted["against"],
        "estimate": float(promoted["estimate"]),
        "lower": float(promoted["lower"]),
        "effective_windows": measured_on,
        "required": round(measured_on * (2 * half / edge) ** 2, 1),
    }


def summarize(
    scorecard: pd.DataFrame,
    champion: Champion,
    monitoring: MonitoringConfig,
    gate: GateConfig,
    night: dt.date | None = None,
) -> dict:
    """The champion's rolling-window summary and the degraded verdict (see the module docstring).

    Returns:
        A JSON-able record: `status` (`judged`, `no_rows`, `too_few_sessions`, `no_baselines`),
        the window (sessions, dates, windows, tickers), the figures, `degraded` and its `reasons`.
    """
    rows = window_rows(scorecard, champion.version, monitoring.window_sessions, night)
    mine = as_of(scorecard, champion.version, night)
    days = np.unique(rows["date"].to_numpy(dtype="datetime64[ns]"))
    out: dict = {
        "model": champion.model,
        "version": champion.version,
        "night": None if night is None else night.isoformat(),
        "trained_until": champion.trained_until.isoformat(),
        "window_sessions": monitoring.window_sessions,
        "sessions": int(len(days)),
        "first": str(pd.Timestamp(days[0]).date()) if len(days) else None,
        "last": str(pd.Timestamp(days[-1]).date()) if len(days) else None,
        "windows": int(len(rows)),
        "tickers": int(rows["ticker"].nunique()),
        "scored_total": int(len(mine)),
        "origins": {str(k): int(v) for k, v in rows["origin"].value_counts().sort_index().items()},
        "out_of_range": int(rows["out_of_range"].sum()) if len(rows) else 0,
        "degraded": False,
        "reasons": [],
    }
    if not len(rows):
        return out | {
            "status": "no_rows",
            "message": f"no matured predictions of {champion.bundle} yet: a prediction is scored "
            f"{champion.horizon} sessions after its date (sessions after {champion.trained_until}, "
            "its training end)",
        }
    needed = max(monitoring.min_sessions, 2 * block_length(gate, champion.horizon, len(days)))
    if len(days) < needed:
        return out | {
            "status": "too_few_sessions",
            "message": f"{len(days)} matured session(s) of {champion.bundle} in the window, fewer than "
            f"the {needed} needed to judge it (monitoring.min_sessions, and two bootstrap blocks)",
        }
    found = evidence(rows, champion.horizon, gate)
    out |= found
    if not found["baselines"]:
        return out | {
            "status": "no_baselines",
            "message": f"{champion.bundle} carries no fitted baselines (baselines.json: a bundle from "
            "before they were stored, or the holdout scheme): the champion's figures only, not judged",
        }
    strongest = found["strongest_baseline"]
    diff = found["baselines"][strongest]["difference"]
    conf = f"{gate.confidence:.0%}"
    reasons = []
    if diff["upper"] < 0:
        reasons.append(
            f"below: balanced accuracy {found['champion']['balanced_accuracy']:.4f} is below {strongest}'s "
            f"{found['baselines'][strongest]['balanced_accuracy']:.4f} beyond the interval: champion minus "
            f"{strongest} {diff['estimate']:+.4f}, one-sided {conf} upper bound {diff['upper']:+.4f} < 0"
        )
    need = required_evidence(champion, gate)
    edge = {"judged": False, "lost": bool(diff["lower"] <= gate.min_effect), **(need or {})}
    if need is not None:
        edge["judged"] = found["effective_windows"] >= need["required"]
        edge["live_effective_windows"] = found["effective_windows"]
        if edge["lost"] and edge["judged"]:
            reasons.append(
                f"edge lost: champion minus {strongest} {diff['estimate']:+.4f}, one-sided {conf} lower "
                f"bound {diff['lower']:+.4f} <= gate.min_effect {gate.min_effect:+.4f} (promoted with "
                f"{need['estimate']:+.4f} over {need['against']}); the window holds ~{found['effective_windows']:.0f} "
                f"effective windows, enough to show that edge (needs {need['required']:.0f})"
            )
    out["edge"] = edge
    return out | {"status": "judged", "degraded": bool(reasons), "reasons": reasons}


def rolling(
    scorecard: pd.DataFrame,
    champion: Champion,
    monitoring: MonitoringConfig,
    gate: GateConfig,
    against: str,
    night: dt.date | None = None,
) -> pd.DataFrame:
    """Per session (the most recent ROLLING_POINTS), the window ending there: the champion's balanced
    accuracy with its bootstrap bounds and `against`'s, for scorecard.png."""
    mine = as_of(scorecard, champion.version, night).sort_values(["date", "ticker"])
    days = np.unique(mine["date"].to_numpy(dtype="datetime64[ns]"))
    points = []
    start = max(monitoring.min_sessions, 2 * block_length(gate, champion.horizon, monitoring.window_sessions))
    for i in range(max(start - 1, len(days) - ROLLING_POINTS), len(days)):
        first = days[max(0, i - monitoring.window_sessions + 1)]
        rows = mine.loc[(mine["date"] >= pd.Timestamp(first)) & (mine["date"] <= pd.Timestamp(days[i]))]
        n = i - max(0, i - monitoring.window_sessions + 1) + 1
        if n < start:
            continue
        found = evidence(rows, champion.horizon, gate)
        if against not in found["baselines"]:
            continue
        points.append(
            {
                "date": pd.Timestamp(days[i]),
                "champion": found["champion"]["balanced_accuracy"],
                "lower": found["champion"]["interval"]["lower"],
                "upper": found["champion"]["interval"]["upper"],
                "baseline": found["baselines"][against]["balanced_accuracy"],
                "difference_upper": found["baselines"][against]["difference"]["upper"],
            }
        )
    return pd.DataFrame(
        points, columns=["date", "champion", "lower", "upper", "baseline", "difference_upper"]
    )


def plot(series: pd.DataFrame, summary: dict, against: str | None) -> bytes:
    """scorecard.png: the champion's rolling balanced accuracy with its interval band, and the
    strongest baseline's, over the sessions scored."""
    import io

    fig = Figure(figsize=(8, 3.6))
    ax = fig.subplots()
    conf = summary.get("confidence", 0.95)
    title = f"{summary['model']}/{summary['version']}: rolling {summary['window_sessions']}-session balanced accuracy"
    if len(series):
        ax.fill_between(
            series["date"],
            series["lower"],
            series["upper"],
            color="tab:blue",
            alpha=0.2,
            label=f"champion, one-sided {conf:.0%} bounds",
        )
        ax.plot(series["date"], series["champion"], color="tab:blue", linewidth=2, label="champion")
        ax.plot(series["date"], series["baseline"], "--", color="tab:orange", label=f"{against} (strongest)")
        below = series["difference_upper"] < 0
        if below.any():
            ax.plot(
                series.loc[below, "date"],
                series.loc[below, "champion"],
                "v",
                color="tab:red",
                label="below the baseline beyond the interval",
            )
        ax.legend(fontsize=7, loc="best")
    else:
        ax.text(0.5, 0.5, summary.get("message", "nothing scored yet"), ha="center", va="center", wrap=True)
    ax.axhline(1 / len(CLASS_NAMES), color="grey", linewidth=0.8, linestyle=":")
    ax.set_title(title + (" — DEGRADED" if summary.get("degraded") else ""), fontsize=9)
    ax.set_ylabel("balanced accuracy")
    fig.autofmt_xdate()
    fig.tight_layout()
    buffer = io.BytesIO()
    # No creation time in the file: the same scorecard gives the same bytes.
    fig.savefig(buffer, format="png", dpi=90, metadata={"Software": None})
    return buffer.getvalue()
