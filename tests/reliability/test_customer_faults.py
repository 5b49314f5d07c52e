"""Customers and Engage traits under API faults: the final customers equal the fault-free ones.

Guards: the retry policy (5xx/429/drops/timeouts are retried), and the writer's "already exists" /
"not found" recovery — a POST whose answer was lost (slow response past the read timeout) is retried,
finds the customer already created, and must end in a PUT, not in a failure or a lost trait.
"""

from __future__ import annotations

import pandas as pd

from amberflo_sync.client import AmberfloClient, ClientSettings
from amberflo_sync.config import EngageConfig, SyncConfig
from amberflo_sync.customer_writer import CustomerWriter
from amberflo_sync.emulator import EmulatorServer, FaultConfig
from amberflo_sync.engage_sync import EngageSpace, sync_engage_space
from amberflo_sync.identifies_sync import identify_streams, sync_identifies
from amberflo_sync.reader import WarehouseReader, create_engine
from amberflo_sync.retry import RetryPolicy
from amberflo_sync.state import StateStore
from tests.integration.test_engage_sync import users
from tests.integration.test_identifies_sync import identify_rows
from tests.segment_rows import BASE_TIME
from tests.warehouse import Warehouse

MIXED = FaultConfig(rate_429=0.08, retry_after=0, rate_500=0.05, rate_502=0.05, rate_503=0.05, rate_drop=0.04,
                    rate_slow=0.04, slow_ms=400, seed=7)
KEY = "customer-faults-key-0123456789"


def sync_everything(tmp_path, name: str, faults: FaultConfig | None) -> tuple[dict, int]:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    reader = WarehouseReader(create_engine(url), chunk_rows=50)
    state = StateStore.from_url(f"sqlite:///{tmp_path / f'{name}.sqlite'}")
    state.create()
    config = SyncConfig(source_schemas=("prod",), engage=EngageConfig(spaces=("engage_default",)))
    with EmulatorServer(api_key=KEY, faults=faults) as emulator:
        settings = ClientSettings(base_url=emulator.url, api_key=KEY, read_timeout=0.2, concurrency=4)
        with AmberfloClient(settings, retry=RetryPolicy(base_delay=0.01, max_delay=0.05, give_up_after=20)) as client:
            writer = CustomerWriter(client, state, concurrency=4, bulk_read_threshold=10_000)
            stream = identify_streams(reader, ["prod"])[0]
            sync_identifies(stream, reader=reader, state=state, writer=writer, config=config, run_id=f"{name}-1")
            sync_engage_space(EngageSpace("engage_default", "identify"), reader=reader, state=state, writer=writer,
                              config=config, run_id=f"{name}-2")
            retries = client.stats.retries
        customers = {k: {f: v for f, v in c.items() if f not in ("createTime", "updateTime")}
                     for k, c in emulator.customers().items()}
    reader.engine.dispose()
    return customers, retries


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
