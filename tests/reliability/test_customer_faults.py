"""Customers and Engage traits under API faults: the final customers equal the fault-free ones.

Guards: the retry policy (5xx/429/drops/timeouts are retried), and the writer's "already exists" /
"not found" recovery — a POST whose answer was lost (slow response past the read timeout) is retried,
finds the customer already created, and must end in a PUT, not in a failure or a lost trait.
"""

from __future__ import annotations

import pandas as pd

from amberflo_sync.config import CustomersConfig, EngageConfig, SyncConfig
from amberflo_sync.emulator import EmulatorServer, FaultConfig
from amberflo_sync.ledger import Ledger
from amberflo_sync.reader import WarehouseReader, create_engine
from amberflo_sync.state import StateStore
from amberflo_sync.tasks import (
    Runtime,
    discover_engage_spaces,
    discover_identify_streams,
    run_engage_space,
    run_identify_stream,
)
from tests.dag_path import amberflo_connection
from tests.integration.test_engage_sync import users
from tests.integration.test_identifies_sync import identify_rows
from tests.segment_rows import BASE_TIME
from tests.warehouse import Warehouse

MIXED = FaultConfig(rate_429=0.08, retry_after=0, rate_500=0.05, rate_502=0.05, rate_503=0.05, rate_drop=0.04,
                    rate_slow=0.04, slow_ms=400, seed=7)
KEY = "customer-faults-key-0123456789"


def sync_everything(tmp_path, name: str, faults: FaultConfig | None) -> tuple[dict, int]:
    """The identify DAG's and the Engage DAG's task functions, one after the other."""
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    reader = WarehouseReader(create_engine(url), chunk_rows=50)
    state = StateStore.from_url(f"sqlite:///{tmp_path / f'{name}.sqlite'}")
    config = SyncConfig(source_schemas=("prod",), engage=EngageConfig(spaces=("engage_default",)),
                        customers=CustomersConfig(concurrency=4, bulk_read_threshold=10_000))
    runtime = Runtime(config, reader, state, Ledger(state))
    with EmulatorServer(api_key=KEY, faults=faults) as emulator:
        with amberflo_connection(emulator.url, KEY, read_timeout=0.2, concurrency=4, retry_give_up_after=20):
            [stream] = discover_identify_streams(runtime)
            first = run_identify_stream(stream, context(f"{name}-1"), runtime)
            [space] = discover_engage_spaces(runtime)
            second = run_engage_space(space, context(f"{name}-2"), runtime)
        retries = first["http_retries"] + second["http_retries"]
        customers = {k: {f: v for f, v in c.items() if f not in ("createTime", "updateTime")}
                     for k, c in emulator.customers().items()}
    reader.engine.dispose()
    return customers, retries


def context(run_id: str) -> dict:
    return {"run_id": run_id, "params": {}, "dag_run": type("DagRun", (), {"run_type": "manual"})()}


def test_customers_and_audiences_survive_mixed_faults(tmp_path):
    warehouse = Warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}")
    calls = [{"user_id": f"user_{i:03d}", "name": f"N{i}", "plan": ["free", "pro"][i % 2], "seats": i}
             for i in range(120)]
    warehouse.write("prod", "identifies", identify_rows(calls, loaded=BASE_TIME))
    warehouse.write("engage_default", "users", users(
        {f"user_{i:03d}": {"order_completed_last_30days": i % 3 == 0, "lifetime_value": float(i)} for i in range(0, 150, 2)}))
    warehouse.dispose()
    clean, _ = sync_everything(tmp_path, "clean", None)
    faulty, retries = sync_everything(tmp_path, "faulty", MIXED)
    print(f"customers: {len(faulty)}, retries under faults: {retries}")
    assert retries > 10
    assert faulty == clean and len(clean) == 120 + 15  # 15 Engage-only users (ids 120..148, even)
