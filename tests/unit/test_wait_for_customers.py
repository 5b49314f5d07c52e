"""``wait_for_customers``: what a scheduled events run waits for, for how long, and what it says."""

from __future__ import annotations

import datetime as dt

import pytest

from amberflo_sync.tasks import customers_ready

END = dt.datetime(2026, 11, 20, 11, tzinfo=dt.timezone.utc)


class TI:
    def __init__(self, succeeded: int = 0, exists: int = 0) -> None:
        self.succeeded, self.exists = succeeded, exists

    def get_dr_count(self, dag_id, logical_dates=None, states=None, **_):
        return self.succeeded if states else self.exists


def context(ti: TI, run_type: str = "scheduled", **params) -> dict:
    return {"ti": ti, "dag_run": type("DagRun", (), {"run_type": run_type})(), "params": params,
            "logical_date": END - dt.timedelta(hours=1), "data_interval_end": END}


@pytest.fixture
def config(tmp_path, monkeypatch):
    def write(**customers):
        path = tmp_path / "c.yaml"
        path.write_text("customers: " + repr(customers).replace("'", '"').replace("True", "true")
                        .replace("False", "false"))
        monkeypatch.setenv("AMBERFLO_SYNC_CONFIG", str(path))
    return write


def test_manual_runs_and_dry_runs_never_wait(config):
    config()
    assert customers_ready(context(TI(), "manual"), now=END)
    assert customers_ready(context(TI(exists=1), dry_run=True), now=END)


def test_a_scheduled_run_bills_once_the_identify_run_succeeded(config, caplog):
    config()
    assert customers_ready(context(TI(succeeded=1, exists=1)), now=END)


def test_a_paused_identify_dag_is_not_waited_for_and_the_log_says_why(config, caplog):
    config()
    assert customers_ready(context(TI(exists=0)), now=END)
    assert "paused or not deployed" in caplog.text and "wait_for_paused" in caplog.text


def test_waiting_says_for_what_how_long_and_how_to_stop(config, caplog):
    config(wait_minutes=30)
    assert not customers_ready(context(TI(exists=1)), now=END + dt.timedelta(minutes=5))
    assert "segment_identifies_to_amberflo" in caplog.text and "waited 5 of at most 30" in caplog.text
    assert "wait_minutes: 0" in caplog.text
    assert customers_ready(context(TI(exists=1)), now=END + dt.timedelta(minutes=31))  # never blocked for good


def test_wait_for_paused_waits_for_a_run_that_does_not_exist_yet(config):
    config(wait_for_paused=True, wait_minutes=30)
    assert not customers_ready(context(TI(exists=0)), now=END)
