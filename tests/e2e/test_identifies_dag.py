"""Real ``airflow dags test segment_identifies_to_amberflo`` runs against the emulator."""

from __future__ import annotations

import pandas as pd
import pytest

from amberflo_sync.ledger import Ledger
from amberflo_sync.state import StateStore
from tests.integration.test_identifies_sync import identify_rows
from tests.segment_rows import BASE_TIME
from tests.unit.test_customers import SEED_TRAITS

pytestmark = pytest.mark.airflow


def test_dag_writes_exactly_the_expected_customers_and_is_idempotent(duckdb_warehouse, airflow, emulator, api_key):
    web = identify_rows([SEED_TRAITS, {"user_id": "user_2", "plan": "free"}, {"user_id": None, "plan": "x"}],
                        loaded=BASE_TIME)
    mobile = identify_rows([{"plan": "enterprise", "push_enabled": True}, {"user_id": "user_2", "name": "Two"}],
                           loaded=BASE_TIME, start=BASE_TIME + pd.Timedelta(hours=1), prefix="m")
    duckdb_warehouse.write("prod", "identifies", web)
    duckdb_warehouse.write("ios_app", "identifies", mobile)
    runner = airflow(duckdb_warehouse)
    result = runner.dags_test("segment_identifies_to_amberflo")
    assert result.succeeded, result.output[-5000:]
    customers = {k: {f: v for f, v in c.items() if f not in ("createTime", "updateTime")}
                 for k, c in emulator.customers().items()}
    assert customers == {
        "some_user_id": {
            "customerId": "some_user_id", "customerName": "John Doe", "customerEmail": "john.doe@email.com",
            "traits": {"avatar": "https:__s3.amazonaws.com_uifaces_faces_twitter_scottkclark_128.jpg",
                       "logins": "5", "phone": "650-769-3240", "plan": "enterprise", "push_enabled": "true",
                       "username": "marakasina", "website": "example.com"},
        },
        "user_2": {"customerId": "user_2", "customerName": "Two", "traits": {"plan": "free"}},
    }
    assert "prod.identifies: status=success read=3 sent=2 duplicates=0 rejected=0 skipped=1" in result.output
    assert api_key not in result.output

    calls_before = emulator.stats()["requests"]
    again = runner.dags_test("segment_identifies_to_amberflo")
    assert again.succeeded, again.output[-5000:]
    assert emulator.stats()["requests"] == calls_before  # nothing changed: zero API calls
    runs = Ledger(StateStore.from_url(runner.state_url)).runs()
    assert {r["status"] for r in runs} == {"success"} and len(runs) == 4
