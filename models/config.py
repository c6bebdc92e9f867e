"""Pipeline configuration: one frozen pydantic model per concern, composed into `PipelineConfig`.

`PipelineConfig` is the retrain flow's parameter, so Prefect validates it and renders it as a form.
Environment-specific values (where the data lives) come from `Settings`, read only when asked for.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Yahoo-style symbols: letters, digits, '.', '-', '^', '='. Anything else (a '/', '..', a space)
# could escape the price store, so it is refused here, before any path is built.
TICKER_PATTERN = re.compile(r"^[A-Z0-9^=][A-Z0-9.\-^=]{0,19}$")

CLASS_NAMES: tuple[str, str, str] = ("down", "range_bound", "up")

# Every feature models.dataset.features can compute, in a stable order (a test checks the two agree).
FEATURE_NAMES: tuple[str, ...] = (
    "log_return",
    "intraday_range",
    "close_location",
    "gap",
    "log_volume_change",
    "volatility_20",
    "momentum_20",
    "rsi_14",
    "dow_mon",
    "dow_tue",
    "dow_wed",
    "dow_thu",
    "dow_fri",
)

DEFAULT_FEATURES: tuple[str, ...] = (
    "log_return",
    "intraday_range",
    "close_location",
    "log_volume_change",
    "momentum_20",
    "volatility_20",
)


# The share of the universe an ingest may quarantine before the run fails. Below 1, so a run in
# which every ticker failed can never succeed; 0 fails the run on the first quarantined ticker.
MaxFailedShare = Annotated[
    float,
    Field(
        ge=0,
        lt=1,
        description="Fail the run when more than this share of the tickers is quarantined "
        "(0 <= share < 1; 0.2 = 20 %).",
    ),
]


def utc_today() -> dt.date:
    """Today in UTC: no exchange has closed a session dated later than this."""
    return dt.datetime.now(dt.UTC).date()


def weekdays_between(start: dt.date, end: dt.date) -> int:
    """Monday-to-Friday days from `start` to `end`, both included: an upper bound on sessions."""
    days = (end - start).days + 1
    if days <= 0:
        return 0
    weeks, rest = divmod(days, 7)
    return weeks * 5 + sum(1 for i in range(rest) if (start.weekday() + i) % 7 < 5)


def validate_ticker(symbol: str) -> str:
    """Return the upper-cased symbol, or raise ValueError naming it when it is not Yahoo-style."""
    cleaned = symbol.strip().upper()
    if not cleaned:
        raise ValueError("ticker '' is not a valid symbol: it is empty (a doubled or trailing comma?)")
    if ".." in cleaned or not TICKER_PATTERN.fullmatch(cleaned):
        raise ValueError(
            f"ticker {symbol!r} is not a valid symbol: use letters, digits, '.', '-', '^', '=' "
            "(at most 20 characters, no '/', '..' or spaces)"
        )
    return cleaned


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


DEFAULT_START = dt.date(2016, 1, 4)


class SourceConfig(_Frozen):
    """Where prices come from and which tickers make up the universe."""

    kind: Literal["sample", "yfinance", "folder"] = "sample"
    tickers: tuple[str, ...] = ("AAA", "BBB", "CCC", "DDD", "EEE", "FFF", "GGG", "HHH")
    start: dt.date = Field(
        default=DEFAULT_START,
        description="First date to load (default 2016-01-04). A wider start backfills the stored "
        "history; a narrower one trains on the stored subset.",
    )
    end: dt.date | None = Field(
        default=None,
        description="Last session to load; None means the last closed session. Set it to train as "
        "of a past day (historical mode, e.g. a data set that ends years ago).",
    )
    exchange: str = "XNYS"
    folder: str | None = Field(default=None, description="For kind=folder: <dir>/<TICKER>.csv|parquet")
    sample_variant: Literal["signal", "noise", "volatility"] = Field(
        default="signal",
        description="For kind=sample: 'signal' plants momentum that persists when calm and reverses "
        "when turbulent (learnable, not linearly); 'volatility' has the volatility regimes without any "
        "direction; 'noise' is a random walk.",
    )
    sample_seed: int = Field(default=7, ge=0, description="For kind=sample: the random seed (>= 0).")
    sample_signal_until: dt.date | None = Field(
        default=None,
        description="For kind=sample, variant signal: the last session that carries the planted "
        "signal; after it the market keeps its volatility regimes but has no direction, so a model "
        "trained before goes stale (the scorecard's control). Part of the source's identity: its "
        "prices are stored apart from the plain signal market's.",
    )
    overlap_sessions: int = Field(default=5, ge=0, description="Sessions refetched to detect restatements.")
    restatement_tolerance: float = Field(
        default=1e-6,
        ge=0,
        lt=1,
        description="Relative adj_close difference on the overlap beyond which history counts as "
        "restated (a split or dividend adjustment) and is refetched in full.",
    )
    max_lag_sessions: int = Field(
        default=0,
        ge=0,
        description="Sessions a ticker's newest price may lag the last session up to `end` before "
        "the ticker counts as stale (quarantined), on a first ingest and every later one alike.",
    )
    max_daily_move: float = Field(
        default=0.5,
        gt=0,
        description="A one-session adj_close move larger than this fraction (0.5 = 50 %) quarantines "
        "the ticker: adjusted prices do not jump like that without a data error.",
    )
    max_price: float = Field(
        default=1e9,
        gt=0,
        description="A price above this quarantines the ticker. 1e9 is far above any share quoted in "
        "a major currency (Berkshire Hathaway A trades below 1e6 USD, Korean shares below 1e7 KRW); "
        "raise it for hyperinflation-era data. A value like 1e308 overflows every later computation.",
    )
    max_volume: float = Field(
        default=1e13,
        gt=0,
        le=1e18,  # the store keeps volume as int64 (at most ~9.2e18)
        description="A daily volume above this quarantines the ticker (1e13 units a day is beyond any "
        "listing's turnover; a value like 1e308 overflows the store's int64 volume).",
    )

    @field_validator("tickers")
    @classmethod
    def _valid_tickers(cls, tickers: tuple[str, ...]) -> tuple[str, ...]:
        if not tickers:
            raise ValueError("the universe is empty: give at least one ticker")
        cleaned = tuple(validate_ticker(t) for t in tickers)
        duplicates = sorted({t for t in cleaned if cleaned.count(t) > 1})
        if duplicates:
            raise ValueError(f"tickers listed twice: {', '.join(duplicates)}")
        return cleaned

    @field_validator("start", "end")
    @classmethod
    def _not_in_the_future(cls, day: dt.date | None) -> dt.date | None:
        today = utc_today()
        if day is not None and day > today:
            raise ValueError(
                f"{day} is in the future (today is {today} in UTC): no exchange has closed a session "
                "on it yet; leave `end` unset to load up to the last closed session"
            )
        return day

    @model_validator(mode="after")
    def _folder_given(self) -> SourceConfig:
        if self.sample_signal_until is not None and (
            self.kind != "sample" or self.sample_variant != "signal"
        ):
            raise ValueError(
                "sample_signal_until switches off the sample market's planted signal: it needs kind "
                f"'sample' and sample_variant 'signal', not {self.kind!r}/{self.sample_variant!r}"
            )
        if self.kind == "folder" and not self.folder:
            raise ValueError("source kind 'folder' needs `folder`, the directory of <TICKER>.csv|parquet")
        if self.end is not None and self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}: swap them")
        return self


class FeatureConfig(_Frozen):
    """The named, ordered feature set (see models.dataset.features.FEATURES for what each means)."""

    names: tuple[str, ...] = DEFAULT_FEATURES
    normalization: Literal["pooled", "per_ticker"] = Field(
        default="pooled",
        description="Stats pooled over the train rows of all tickers, or one set per ticker.",
    )
    robust: tuple[str, ...] = Field(
        default=(),
        description="Features normalized by median and IQR instead of mean and std (fitted on train "
        "only) and clipped to ±robust_clip: for heavy-tailed inputs such as log_volume_change.",
    )
    robust_clip: float = Field(
        default=5.0, gt=0, description="Clip of the robust features' normalized values, in IQR-stds."
    )

    @model_validator(mode="after")
    def _robust_are_selected(self) -> FeatureConfig:
        extra = [n for n in self.robust if n not in self.names]
        if extra:
            raise ValueError(
                f"features.robust lists {extra}, which are not in features.names {list(self.names)}"
            )
        return self

    @field_validator("names")
    @classmethod
    def _known(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [n for n in names if n not in FEATURE_NAMES]
        if unknown:
            raise ValueError(f"unknown features {unknown}; known: {sorted(FEATURE_NAMES)}")
        if len(set(names)) != len(names):
            raise ValueError(f"a feature is listed twice in {list(names)}")
        if not names:
            raise ValueError("at least one feature is needed")
        return names


class SplitConfig(_Frozen):
    """Chronological train / validation / test split over the sessions, with purge gaps between."""

    train_fraction: float = Field(default=0.7, gt=0, lt=1)
    validation_fraction: float = Field(default=0.15, gt=0, lt=1)
    purge_sessions: int | None = Field(
        default=None,
        ge=0,
        description="Sessions left out between splits; None means window + horizon (the minimum).",
    )
    embargo_sessions: int = Field(default=0, ge=0, description="Extra sessions after the purge.")

    @model_validator(mode="after")
    def _fractions(self) -> SplitConfig:
        if self.train_fraction + self.validation_fraction >= 1:
            raise ValueError("train_fraction + validation_fraction must leave room for a test split")
        return self


class LabelConfig(_Frozen):
    """Up / down / range-bound from the forward return r over `horizon` sessions.

    rule "fixed": up if r > theta, down if r < -theta. rule "volatility": the threshold is
    k * sigma_t * sqrt(horizon), sigma_t the trailing volatility known at t. With balance_on_train
    the scale (theta or k) is chosen on the train split so a third of its windows are range-bound.
    """

    horizon: int = Field(default=5, ge=1)
    rule: Literal["fixed", "volatility"] = "fixed"
    # Below 1: a forward return is always above -1 (-100 %), so a theta of 1 or more leaves no `down`.
    theta: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        description="rule=fixed: returns beyond ±theta are up/down (0.01 = 1 %).",
    )
    k: float = Field(default=0.5, gt=0, description="rule=volatility: threshold k·σ·√horizon.")
    volatility_window: int = Field(default=20, ge=2, description="Sessions of returns in σ.")
    balance_on_train: bool = Field(
        default=False, description="Choose theta (or k) on the train split to balance the classes."
    )
    max_class_share: float = Field(
        default=0.9, gt=0.34, le=1, description="A split where one class exceeds this share fails."
    )


class WindowConfig(_Frozen):
    length: int = Field(default=10, ge=1, description="Sessions of features the model sees.")


class ModelConfig(_Frozen):
    """The LSTM stack. recurrent_dropout defaults to 0 so GPUs get the fused cuDNN kernel."""

    name: str = Field(default="updown", pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$")
    lstm_units: tuple[int, ...] = (32,)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    recurrent_dropout: float = Field(default=0.0, ge=0, lt=1)
    output_activation: Literal["softmax", "sigmoid", "linear"] = Field(
        default="softmax",
        description="softmax, or linear logits (from_logits=True). sigmoid is refused by the guards.",
    )
    output_width: int = Field(default=3, description="Must equal the number of classes (3).")
    stateful: bool = Field(
        default=False,
        description="Carry LSTM state across batches: refused by the training preflight "
        "(stateful-unsupported), since each window is a whole sequence and batches are not "
        "continuations of each other.",
    )

    @classmethod
    def classic(cls, name: str = "updown") -> ModelConfig:
        """The classic 2 x LSTM(50), dropout 0.2, recurrent_dropout 0.2, with a correct softmax head."""
        return cls(name=name, lstm_units=(50, 50), dropout=0.2, recurrent_dropout=0.2)

    @field_validator("lstm_units")
    @classmethod
    def _units(cls, units: tuple[int, ...]) -> tuple[int, ...]:
        if not units or any(u < 1 for u in units):
            raise ValueError("lstm_units needs at least one positive layer width")
        return units


class TrainingConfig(_Frozen):
    epochs: int = Field(default=8, ge=1)
    batch_size: int = Field(default=256, ge=1)
    learning_rate: float = Field(default=2e-3, gt=0)
    seed: int = Field(default=42, ge=0)
    class_weights: bool = True
    early_stopping_patience: int = Field(default=3, ge=1)


class EvaluationConfig(_Frozen):
    """How a trained model is judged out of sample.

    walk_forward (default): the last `test_fraction` of the sessions is cut into `folds` consecutive
    test periods; fold k trains on what precedes its test period (minus a validation period of
    `split.validation_fraction` of the sessions and the purge + embargo gaps), with its own
    train-only stats, and predicts its own test period. The folds' out-of-sample predictions,
    pooled, are what the gate judges. holdout: one train / validation / test split by
    `split` fractions, judged by the margin rules of `gate` (the behaviour before walk-forward).
    """

    scheme: Literal["walk_forward", "holdout"] = "walk_forward"
    folds: int = Field(default=4, ge=2, le=20, description="walk_forward: number of test periods.")
    train_window: Literal["expanding", "sliding"] = Field(
        default="expanding",
        description="walk_forward: each fold trains on everything before it (expanding), or on as many "
        "sessions as the first fold had, ending at the same place (sliding).",
    )
    test_fraction: float = Field(
        default=0.3,
        gt=0,
        lt=1,
        description="walk_forward: share of the sessions that are tested out of sample, over all folds.",
    )


class GateConfig(_Frozen):
    """When a trained model may become the champion.

    walk_forward: the lower bound of a one-sided `confidence` interval (moving-block bootstrap over
    sessions) of (model - baseline) balanced accuracy must exceed `min_effect` for every baseline,
    the model must beat the strongest baseline in at least `min_fold_share` of the folds, and the
    champion must not beat it on their common out-of-sample windows beyond the interval and
    `champion_tolerance`. holdout: `margin` and `champion_tolerance` on point estimates.
    """

    margin: float = Field(
        default=0.02,
        ge=0,
        lt=1,
        description="holdout: balanced accuracy must beat every baseline by this much.",
    )
    champion_tolerance: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="holdout: may lose at most this much balanced accuracy to the champion. "
        "walk_forward: the upper bound of (model - champion) must be at least minus this.",
    )
    confidence: float = Field(
        default=0.95, gt=0.5, lt=1, description="walk_forward: one-sided confidence of the bounds."
    )
    min_effect: float = Field(
        default=0.0,
        ge=0,
        description="walk_forward: the lower bound of (model - baseline) balanced accuracy must exceed this.",
    )
    bootstrap_samples: int = Field(default=2000, ge=100, le=100_000)
    block_sessions: int | None = Field(
        default=None,
        ge=1,
        description="Bootstrap block length in sessions; at least the label horizon. None: "
        "max(2 x horizon, cube root of the sessions tested).",
    )
    bootstrap_seed: int = 0
    min_fold_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="walk_forward: share of folds whose strongest baseline the model must beat.",
    )
    require_direction_skill: bool = Field(
        default=False,
        description="walk_forward: also require the lower bound of direction skill (sign accuracy on "
        "up/down calls vs always the train-majority direction) to be above zero.",
    )
    min_champion_sessions: int = Field(
        default=20,
        ge=1,
        description="walk_forward: fewest common out-of-sample sessions on which the champion can be "
        "compared; fewer, and a champion trained on data as new as ours blocks promotion.",
    )
    require_full_universe: bool = Field(
        default=False,
        description="Refuse to train (before any training) when ingest quarantined a ticker of the "
        "universe. Off by default: a run on the rest says which tickers it dropped and why in its "
        "summary, report and manifest; the unattended nightly deployment turns it on.",
    )


class RegistryConfig(_Frozen):
    """What publishing keeps and checks (where the registry lives is a Setting)."""

    keep_versions: int = Field(
        default=10, ge=1, description="Retention: newest K versions plus every aliased one."
    )
    smoke_test: bool = Field(
        default=True, description="Load and predict in a fresh process before the champion moves."
    )
    out_of_range_z: float = Field(
        default=10.0,
        gt=0,
        description="At prediction, a window with a normalized input beyond ±this many train "
        "standard deviations is flagged `out_of_range`; the smoke test reports their share.",
    )


class MonitoringConfig(_Frozen):
    """What the nightly run checks about the champion after ingest (models.monitoring).

    The live scorecard judges the champion on the matured sessions of the last `window_sessions`
    with the gate's baselines, bootstrap and confidence (`gate`); drift compares the last
    `drift_sessions` sessions' features with the train distribution stored in the bundle's stats.
    None of it changes what is trained.
    """

    window_sessions: int = Field(
        default=60,
        ge=5,
        description="Rolling window of the live scorecard: the last N sessions whose labels matured.",
    )
    min_sessions: int = Field(
        default=20,
        ge=2,
        description="Fewest matured sessions in the window before the champion is judged (and never "
        "fewer than two bootstrap blocks).",
    )
    backfill: bool = Field(
        default=True,
        description="Each night also score the champion on matured sessions after its training end "
        "that no nightly prediction covers (a champion rolled back, nights the pipeline did not run).",
    )
    drift_sessions: int = Field(
        default=250,
        ge=5,
        description="Drift: the latest N sessions compared with the train distribution. Persistent "
        "features (20-session volatility and momentum) follow market regimes that last months, so a "
        "short window measures the current regime: on the sample market a 60-session window flags "
        "drift on most nights, a 250-session one on about one in eight.",
    )
    drift_psi: float = Field(
        default=0.25,
        gt=0,
        description="Drift: a feature whose population stability index on the train-fitted bins exceeds "
        "this has drifted (0.1-0.25 is commonly read as a moderate shift, above 0.25 as a large one).",
    )
    drift_mean_shift: float = Field(
        default=0.5,
        gt=0,
        description="Drift: a feature whose recent mean lies more than this many train standard "
        "deviations from its train mean has drifted.",
    )


class PipelineConfig(_Frozen):
    """Everything that defines one retrain run, except where the data lives."""

    source: SourceConfig = SourceConfig()
    features: FeatureConfig = FeatureConfig()
    split: SplitConfig = SplitConfig()
    labels: LabelConfig = LabelConfig()
    window: WindowConfig = WindowConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    gate: GateConfig = GateConfig()
    registry: RegistryConfig = RegistryConfig()
    monitoring: MonitoringConfig = MonitoringConfig()

    @model_validator(mode="after")
    def _consistent(self) -> PipelineConfig:
        block = self.gate.block_sessions
        if block is not None and block < self.labels.horizon:
            raise ValueError(
                f"gate.block_sessions ({block}) is shorter than labels.horizon ({self.labels.horizon}): "
                "overlapping labels must stay in one bootstrap block"
            )
        if (
            self.evaluation.scheme == "walk_forward"
            and self.evaluation.test_fraction + self.split.validation_fraction >= 0.9
        ):
            raise ValueError(
                "evaluation.test_fraction + split.validation_fraction must leave at least 10 % of the "
                "sessions to train the first walk-forward fold"
            )
        return self

    @model_validator(mode="after")
    def _windows_fit(self) -> PipelineConfig:
        """Refuse, before anything is fetched, a window that no split of the date range could hold.

        Weekdays bound the sessions from above and the features' warm-up is ignored, so this never
        refuses a configuration that could run; the dataset build checks the exact counts.
        """
        end = self.source.end or utc_today()
        most = weekdays_between(self.source.start, end)
        gap = self.purge_sessions + self.split.embargo_sessions
        usable = most - 2 * gap
        train, validation = self.split.train_fraction, self.split.validation_fraction
        needed = self.window.length + self.labels.horizon
        for split, at_most in (
            ("train", usable * train),
            ("validation", usable * validation),
            ("test", usable * (1 - train - validation) + 2),  # + 2: the floors of the other two
        ):
            if at_most < needed:
                raise ValueError(
                    f"a window of {self.window.length} sessions plus a horizon of {self.labels.horizon} "
                    f"({needed} sessions) cannot fit: {self.source.start}..{end} holds at most {most} "
                    f"sessions (its weekdays), so after two gaps of {gap} the {split} split has at most "
                    f"{max(int(at_most), 0)}. Shrink window.length, labels.horizon or the purge, or "
                    "start earlier"
                )
        return self

    @property
    def purge_sessions(self) -> int:
        """The configured purge, or the minimum that keeps windows and horizons apart."""
        if self.split.purge_sessions is None:
            return self.window.length + self.labels.horizon
        return self.split.purge_sessions


class IngestParameters(_Frozen):
    """The ingest flow's parameters besides the data home, checked together before a run."""

    source: SourceConfig = SourceConfig()
    max_failed_share: MaxFailedShare = 0.2


class Settings(BaseSettings):
    """Environment-specific settings, read from PIPELINE_* variables when instantiated."""

    model_config = SettingsConfigDict(env_prefix="PIPELINE_", frozen=True)

    home: Path = Path(".pipeline")
    registry_url: str | None = Field(
        default=None,
        description="Where bundles are published: a path or fsspec URL (s3://bucket/prefix); "
        "default <home>/registry.",
    )
    registry_cache_dir: Path | None = Field(
        default=None,
        description="Where object-store bundles are downloaded to (a shared, bounded cache); "
        "default $XDG_CACHE_HOME/updown-pipeline/registry, else ~/.cache/updown-pipeline/registry.",
    )
    registry_cache_max_entries: int = Field(
        default=8, ge=1, description="Bundle copies the download cache keeps (least recently used go)."
    )
    registry_cache_max_bytes: int = Field(
        default=2 * 1024**3, ge=1, description="Bytes the download cache keeps (least recently used go)."
    )
    config: Path | None = Field(
        default=None,
        description="A JSON PipelineConfig that `python -m flows.retrain` (and `make demo`) starts "
        "from when no --config is given.",
    )
    runs_retention_days: float = Field(
        default=7.0,
        ge=0,
        description="How long a failed run's scratch (<home>/runs/<flow-run-id>/) is kept for inspection; "
        "a completed run's is removed at once.",
    )
