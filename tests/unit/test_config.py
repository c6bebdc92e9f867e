import pytest
from pydantic import ValidationError

from models.config import PipelineConfig, SourceConfig, validate_ticker


@pytest.mark.parametrize("good", ["AAPL", "brk-b", "BRK.B", "^GSPC", "EURUSD=X", "7203.T"])
def test_yahoo_style_symbols_are_accepted(good):
    assert validate_ticker(good) == good.upper()


@pytest.mark.parametrize("bad", ["../etc", "A/B", "A B", "", "..", "A..B", "X" * 21])
def test_symbols_that_could_escape_the_store_are_refused(bad):
    with pytest.raises(ValueError, match="not a valid symbol"):
        validate_ticker(bad)


def test_duplicate_and_empty_universes_are_refused():
    with pytest.raises(ValidationError, match="listed twice"):
        SourceConfig(tickers=("AAA", "aaa"))
    with pytest.raises(ValidationError, match="empty"):
        SourceConfig(tickers=())


def test_unknown_feature_is_named():
    with pytest.raises(ValidationError, match="nope"):
        PipelineConfig.model_validate({"features": {"names": ["log_return", "nope"]}})


def test_default_purge_covers_window_and_horizon():
    config = PipelineConfig()
    assert config.purge_sessions == config.window.length + config.labels.horizon


def test_config_is_frozen_and_round_trips_as_json():
    config = PipelineConfig()
    with pytest.raises(ValidationError):
        config.window.length = 3
    assert PipelineConfig.model_validate_json(config.model_dump_json()) == config


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("labels", "theta", 1.0),  # a return is always above -100 %: no `down` at theta >= 1
        ("labels", "theta", 0.0),
        ("source", "sample_seed", -1),
        ("training", "seed", -1),
        ("gate", "margin", 1.0),
        ("source", "restatement_tolerance", 1.0),
        ("window", "length", 0),
    ],
)
def test_numeric_settings_outside_their_range_are_refused(section, field, value):
    with pytest.raises(ValidationError, match=f"{section}.{field}"):
        PipelineConfig.model_validate({section: {field: value}})


def test_dates_in_the_future_are_refused_but_today_is_not():
    import datetime as dt

    from models.config import utc_today

    tomorrow = utc_today() + dt.timedelta(days=1)
    for field in ("start", "end"):
        with pytest.raises(ValidationError, match=f"{tomorrow} is in the future"):
            SourceConfig(**{field: tomorrow})
    assert SourceConfig(end=utc_today()).end == utc_today()
    with pytest.raises(ValidationError, match="end 2024-01-02 is before start 2024-05-01"):
        SourceConfig(start=dt.date(2024, 5, 1), end=dt.date(2024, 1, 2))


def test_a_window_no_split_can_hold_is_refused_before_any_data():
    source = {"start": "2024-01-02", "end": "2024-12-31"}
    with pytest.raises(ValidationError, match="a window of 100 sessions plus a horizon of 5"):
        PipelineConfig.model_validate({"source": source, "window": {"length": 100}})
    # 2024 has 262 weekdays (252 NYSE sessions): after two purges of 25, validation holds at most
    # 31 sessions, enough for one window of 20 + horizon 5.
    PipelineConfig.model_validate({"source": source, "window": {"length": 20}})


def test_the_weekday_bound_is_never_below_the_sessions():
    import datetime as dt

    from models.config import weekdays_between
    from models.prices import calendar

    for start, end in [
        (dt.date(2024, 1, 1), dt.date(2024, 12, 31)),
        (dt.date(2016, 1, 4), dt.date(2016, 1, 8)),
    ]:
        assert weekdays_between(start, end) >= len(calendar.sessions("XNYS", start, end))
    assert weekdays_between(dt.date(2024, 1, 6), dt.date(2024, 1, 7)) == 0  # a weekend
    assert weekdays_between(dt.date(2024, 1, 1), dt.date(2024, 1, 7)) == 5


def test_ingest_parameters_refuse_shares_outside_0_to_1():
    from models.config import IngestParameters

    for share in (-0.1, 1.0, 5.0):
        with pytest.raises(ValidationError, match="max_failed_share"):
            IngestParameters(max_failed_share=share)
    assert IngestParameters(max_failed_share=0.0).max_failed_share == 0.0


def test_robust_features_must_be_selected_features():
    with pytest.raises(
        ValidationError, match=r"features.robust lists \['gap'\], which are not in features.names"
    ):
        PipelineConfig.model_validate({"features": {"robust": ["gap"]}})
    config = PipelineConfig.model_validate({"features": {"robust": ["log_volume_change"], "robust_clip": 4}})
    assert config.features.robust == ("log_volume_change",) and config.features.robust_clip == 4


@pytest.mark.parametrize("field", ["max_price", "max_volume"])
def test_magnitude_bounds_are_positive(field):
    with pytest.raises(ValidationError, match=field):
        SourceConfig(**{field: 0})


def test_the_volume_bound_fits_the_stores_int64():
    with pytest.raises(ValidationError, match="max_volume"):
        SourceConfig(max_volume=1e19)
