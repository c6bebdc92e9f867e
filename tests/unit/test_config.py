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
