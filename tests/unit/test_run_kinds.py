"""Run-type rules in one place: scheduled, manual, backfill, dry run."""

from __future__ import annotations

import datetime as dt

import pytest

from amberflo_sync.run_kinds import BACKFILL, MANUAL, SCHEDULED, classify

T0 = dt.datetime(2026, 11, 20, 10, tzinfo=dt.timezone.utc)
T1 = T0 + dt.timedelta(hours=1)


@pytest.mark.parametrize(("run_type", "params", "kind", "waits", "moves", "retries"), [
    ("scheduled", {}, SCHEDULED, True, True, True),
    ("manual", {}, MANUAL, False, True, True),
    ("asset_triggered", {}, MANUAL, False, True, True),
    ("backfill", {}, BACKFILL, False, False, False),
    ("manual", {"start": "2026-11-20T10:00:00Z", "end": "2026-11-20T11:00:00Z"}, BACKFILL, False, False, False),
    ("scheduled", {"dry_run": True}, SCHEDULED, False, False, False),
    ("manual", {"dry_run": True}, MANUAL, False, False, False),
])
def test_each_kind_of_run_has_its_rules(run_type, params, kind, waits, moves, retries):
    rules = classify(run_type, params, (T0, T1))
    assert (rules.kind, rules.waits_for_customers, rules.moves_watermarks, rules.retries_rejected) == (
        kind, waits, moves, retries)
    assert rules.label == (f"{kind}+dry_run" if params.get("dry_run") else kind)


def test_airflow_enum_run_types_are_understood():
    from airflow.utils.types import DagRunType

    assert classify(DagRunType.SCHEDULED).kind == SCHEDULED
    assert classify(DagRunType.BACKFILL_JOB, {}, (T0, T1)).interval == (T0, T1)


def test_a_backfill_interval_is_utc_and_complete():
    assert classify("manual", {"start": "2026-11-20T12:00:00+02:00", "end": "2026-11-20T11:00:00"}).interval == (
        T0, T1)
    with pytest.raises(ValueError, match="both the start and the end"):
        classify("manual", {"start": "2026-11-20T10:00:00Z"})
    with pytest.raises(ValueError, match="data interval"):
        classify("backfill", {}, (None, None))
