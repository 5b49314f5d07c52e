"""Slices on the events DAG's own path: the later slice succeeds and the earlier fails, then the earlier
is retried (a cleared mapped task) — the watermark waits for it, then covers both."""

from __future__ import annotations

from dataclasses import replace

from amberflo_sync.config import EventsConfig, FanOutConfig, SyncConfig
from amberflo_sync.emulator import FaultConfig
from tests.dag_path import DagPath, amberflo_connection
from tests.segment_rows import event_rows

CONFIG = SyncConfig(source_schemas=("prod",), chunk_rows=10, batch_size=10,
                    events=EventsConfig(pages=False, screens=False), fan_out=FanOutConfig(slice_rows=4, max_slices=2))


def test_an_earlier_failed_slice_holds_the_watermark_until_it_is_retried(duckdb_warehouse, emulator, api_key,
                                                                          sqlite_state_url):
    rows = event_rows(8, prefix="a", event_text="ApiCalls")
    rows.loc[:3, "user_id"] = "user_late"  # the first slice's records: refused until the customer exists
    duckdb_warehouse.write("prod", "api_calls", rows)
    with DagPath(duckdb_warehouse.url, sqlite_state_url, replace(CONFIG), read_only=False) as dag, \
            amberflo_connection(emulator.url, api_key):
        context = dag.context("manual__two-slices")
        plan = dag.plan(context)
        units = plan["units"]
        assert [s["index"] for u in units for s in u] == [0, 1] and len(units) == 2
        emulator.set_faults(FaultConfig(refuse_customers=("user_late",)))
        later = dag.run_unit(units[1], context)  # the later slice first: it succeeds
        assert later[0]["status"] == "success"
        try:
            dag.run_unit(units[0], context)
            raise AssertionError("the first slice should have failed")
        except Exception as exc:  # noqa: BLE001 - a failed mapped task
            assert "does not exist" in str(exc.__cause__ or exc)
        try:
            dag.finish(plan, context)
            raise AssertionError("the run should have failed")
        except Exception as exc:  # noqa: BLE001
            assert "prod.api_calls" in str(exc)
        assert dag.ledger.watermark("prod.api_calls") is None  # the later slice alone moves nothing
        emulator.set_faults(FaultConfig())  # the customer exists now; the user clears the failed task
        dag.run_unit(units[0], context)
        assert "failed=" not in dag.finish(plan, context)
        upper = [s for u in units for s in u][-1]["upper"]
        assert str(dag.ledger.watermark("prod.api_calls").value).replace(" ", "T")[:19] == upper.replace(" ", "T")[:19]
    assert sorted(r["uniqueId"] for r in emulator.records()) == [f"a-{i}" for i in range(8)]


def test_a_cleared_run_after_new_rows_landed_never_counts_its_first_attempt(duckdb_warehouse, emulator, api_key,
                                                                          sqlite_state_url):
    """The run succeeded, new rows landed, the user cleared it: the re-planned slice's worker died before
    recording anything. Once, ``finish`` counted the first attempt's success (same run id, same slice
    number, another window) and moved the watermark past rows never sent; no later run sent them."""
    import pandas as pd

    from tests.segment_rows import BASE_TIME

    first = event_rows(3, prefix="a", event_text="ApiCalls")
    duckdb_warehouse.write("prod", "api_calls", first)
    config = replace(CONFIG, fan_out=FanOutConfig())
    with DagPath(duckdb_warehouse.url, sqlite_state_url, config, read_only=False) as dag, \
            amberflo_connection(emulator.url, api_key):
        context = dag.context("scheduled__2026-11-20T11:00:00+00:00")
        assert dag.run(context).succeeded
        mark = dag.ledger.watermark("prod.api_calls").value
        late = event_rows(2, prefix="late", loaded=BASE_TIME + pd.Timedelta(hours=6), event_text="ApiCalls")
        duckdb_warehouse.write("prod", "api_calls", pd.concat([first, late], ignore_index=True))
        cleared = dag.context(context["run_id"])  # the same run, cleared
        plan = dag.plan(cleared)
        part = plan["units"][0][0]
        from amberflo_sync.planning import Slice

        dag.ledger.slice_started(part["plan_id"], Slice.from_dict(part))  # ... and its worker dies here
        try:
            dag.finish(plan, cleared)
            raise AssertionError("a run whose slice never finished must fail")
        except Exception as exc:  # noqa: BLE001
            assert "did not finish" in str(exc)
        assert dag.ledger.watermark("prod.api_calls").value == mark
        assert dag.run(dag.context()).succeeded  # the next run sends the late rows
    assert {"late-0", "late-1"} <= {r["uniqueId"] for r in emulator.records()}
