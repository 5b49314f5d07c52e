"""Names from the warehouse never become paths as they are (issue 14: a table named ``../x`` wrote
dry-run output outside ``dry_run_dir``)."""

from __future__ import annotations


import pytest

from amberflo_sync.config import SyncConfig
from amberflo_sync.paths import path_inside, safe_filename
from amberflo_sync.reader import EventStream
from amberflo_sync.tasks import _dry_run


@pytest.mark.parametrize(
    "name, expected",
    [
        ("prod.pages", "prod.pages"),
        ("..", "_."),
        (".", "_"),
        ("../../etc/passwd", "_._.._etc_passwd"),
        ("/abs/path", "_abs_path"),
        ("a\x00b", "a_b"),
        ("a\\b", "a_b"),
        ("manual__2026-01-01T10:00:00+00:00", "manual__2026-01-01T10_00_00_00_00"),
        ("", "_"),
    ],
)
def test_safe_filename(name, expected):
    assert safe_filename(name) == expected
    assert "/" not in safe_filename(name) and "\x00" not in safe_filename(name)
    assert safe_filename(name) not in (".", "..")


@pytest.mark.parametrize("table", ["../../outside", "/etc/cron.d/x", "evil\x00name", "..", "a/../../b"])
def test_dry_run_output_stays_inside_dry_run_dir(tmp_path, table):
    base = tmp_path / "dry_run"
    config = SyncConfig(dry_run_dir=str(base))
    dry = _dry_run(config, {}, "manual__../../run", EventStream(schema="prod", table=table, kind="track"))
    assert dry.path is not None
    assert base.resolve() in dry.path.resolve().parents
    assert dry.path.parent.parent == base and dry.path.name.endswith(".jsonl")
    assert "\x00" not in str(dry.path)


def test_path_inside_refuses_nothing_safe_and_keeps_ordinary_names(tmp_path):
    assert path_inside(tmp_path, "run_1", "prod.pages.jsonl") == tmp_path / "run_1" / "prod.pages.jsonl"
    assert path_inside(tmp_path, "..", "..") == tmp_path / "_." / "_."


def test_path_inside_checks_the_result(tmp_path, monkeypatch):
    import amberflo_sync.paths as paths

    monkeypatch.setattr(paths, "safe_filename", lambda name: name)  # the rules broken on purpose
    with pytest.raises(ValueError, match="outside"):
        path_inside(tmp_path / "d", "..", "x")
