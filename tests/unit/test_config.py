"""The YAML config loader."""

from __future__ import annotations

import datetime as dt

import pytest

from amberflo_sync.config import CONFIG_ENV_VAR, DEFAULT_CONFIG_PATH, ConfigError, EventsConfig, load_config


def test_repository_config_loads_and_documents_the_defaults():
    config = load_config(DEFAULT_CONFIG_PATH)
    assert config.source_schemas == ("prod", "ios_app")
    assert config.cursor_column == "uuid_ts" and config.overlap == dt.timedelta(hours=2)
    assert config.batch_size == 500
    assert config.state.url.startswith("sqlite:///") and "{config_dir}" not in config.state.url
    assert config.engage.snapshot_complete is True


def test_env_var_overrides_the_path(tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_text("source_schemas: [web]\ncursor_column: loaded_at\noverlap_hours: 0.5\nstate: {url: null}\n")
    monkeypatch.setenv(CONFIG_ENV_VAR, str(path))
    config = load_config()
    assert config.source_schemas == ("web",) and config.cursor_column == "loaded_at"
    assert config.overlap == dt.timedelta(minutes=30) and config.state.url is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("batch_sise: 10\n", "unknown config key(s): batch_sise"),
        ("batch_size: 0\n", "batch_size"),
        ("overlap_hours: two\n", "overlap_hours"),
        ("source_schemas: []\n", "source_schemas"),
        ("events: {includes: [a]}\n", "unknown events key(s): includes"),
        ("engage: {snapshot_complete: 'no'}\n", "engage.snapshot_complete"),
    ],
)
def test_invalid_values_name_the_key(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_include_exclude_globs_are_case_insensitive():
    events = EventsConfig(include=("API_*",), exclude=("api_errors",))
    assert events.wants_event_table("api_calls") and not events.wants_event_table("API_ERRORS")
    assert not events.wants_event_table("order_completed")
