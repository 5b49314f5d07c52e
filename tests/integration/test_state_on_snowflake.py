"""State in the warehouse on a Snowflake-speaking server (``fakesnow``), through a ``snowflake``-type
Airflow connection: the state schema folds like any unquoted name, and the customers lock holds on an
engine that does not enforce primary keys (exactly one of two concurrent holders wins)."""

from __future__ import annotations


import pytest
import sqlalchemy as sa

pytest.importorskip("fakesnow", reason="fakesnow[server] is installed from requirements.txt")

from amberflo_sync.hooks import SegmentWarehouseHook  # noqa: E402
from amberflo_sync.ledger import Ledger  # noqa: E402
from amberflo_sync.state import StateStore  # noqa: E402
from tests.locks import contend  # noqa: E402
from tests.snowflake_warehouse import SnowflakeWarehouse, fakesnow_server  # noqa: E402


@pytest.fixture(scope="module")
def snowflake_state(tmp_path_factory):
    with fakesnow_server() as port:
        warehouse = SnowflakeWarehouse(port)
        mp = pytest.MonkeyPatch()
        mp.setenv("AIRFLOW_CONN_SEGMENT_WAREHOUSE", warehouse.connection_json())
        engine = SegmentWarehouseHook().get_warehouse_engine().engine
        state = StateStore(engine, schema="amberflo_sync")
        state.create()
        yield state
        engine.dispose()
        warehouse.dispose()
        mp.undo()


def test_the_state_schema_is_folded_like_any_unquoted_name(snowflake_state):
    ledger = Ledger(snowflake_state)
    ledger.record_rejected("prod.pages", [{"id": "m-1", "reason": "missing_customer_id", "row": {}}])
    with snowflake_state.engine.connect() as conn:  # what a user types, without quotes
        assert conn.execute(sa.text("SELECT COUNT(*) FROM amberflo_sync.rejected_rows")).scalar() == 1
        assert conn.execute(sa.text("SELECT COUNT(*) FROM AMBERFLO_SYNC.REJECTED_ROWS")).scalar() == 1


def test_two_concurrent_lock_holders_exactly_one_wins_where_keys_are_not_enforced(snowflake_state):
    won = contend(snowflake_state)
    assert len(won) == 1
    assert not snowflake_state.try_lock("customers", "third")
    snowflake_state.release_lock("customers", won[0])

