"""Identify sync against the emulator over HTTP: merge, preservation, zero-cost no-ops, re-creation."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest
import requests

from dataclasses import replace

from amberflo_sync.config import CustomersConfig, SyncConfig
from amberflo_sync.ledger import Ledger, RunStats
from amberflo_sync.reader import WarehouseReader, create_engine
from amberflo_sync.state import StateStore
from amberflo_sync.tasks import Runtime, discover_identify_streams, run_identify_stream
from tests.dag_path import amberflo_connection
from tests.segment_rows import BASE_TIME
from tests.unit.test_customers import SEED_TRAITS

CONFIG = SyncConfig(source_schemas=("prod",), chunk_rows=3)


def identify_rows(calls: list[dict], *, loaded: pd.Timestamp, start: pd.Timestamp = BASE_TIME, prefix: str = "i") -> pd.DataFrame:
    rows = []
    for i, call in enumerate(calls):
        rows.append({"id": f"{prefix}-{i}", "anonymous_id": "anon", "user_id": "some_user_id",
                     "timestamp": start + pd.Timedelta(minutes=i), "received_at": start + pd.Timedelta(minutes=i),
                     "uuid_ts": loaded + pd.Timedelta(seconds=i), "context_library_name": "analytics.js", **call})
    frame = pd.DataFrame(rows)
    for column in frame.columns:
        if frame[column].isna().all():
            frame[column] = frame[column].astype("string")
    return frame


class CustomersHarness:
    """The identify DAG's own task functions over one warehouse, one state database and the emulator."""

    def __init__(self, warehouse, emulator, key, state_url, **writer_options):
        self.warehouse, self.emulator, self.key = warehouse, emulator, key
        self.reader = WarehouseReader(create_engine(warehouse.url), chunk_rows=CONFIG.chunk_rows)
        self.state = StateStore.from_url(state_url)
        self.ledger = Ledger(self.state)
        self.writer_options = writer_options
        self.loads = 0

    def runtime(self, config: SyncConfig) -> Runtime:
        customers = CustomersConfig(**{k: v for k, v in self.writer_options.items()
                                       if k in ("concurrency", "bulk_read_threshold")})
        return Runtime(replace(config, customers=customers), self.reader, self.state, self.ledger)

    def load(self, calls: list[dict], **kw) -> None:
        self.loads += 1
        when = BASE_TIME + pd.Timedelta(hours=3 * self.loads)  # each load carries newer calls
        frame = identify_rows(calls, loaded=when, start=kw.pop("start", when), prefix=f"l{self.loads}", **kw)
        self.warehouse.write("prod", "identifies", frame, replace=self.loads == 1)

    def new_run(self) -> None:
        """Each run is a new task with a new reader: a reader keeps its catalog for its life."""
        self.reader = WarehouseReader(self.reader.engine, chunk_rows=CONFIG.chunk_rows)

    def sync(self, params: dict | None = None) -> RunStats:
        """One identify DAG run: discover, then the mapped ``sync_customers`` task."""
        self.new_run()
        runtime = self.runtime(replace(CONFIG, source_schemas=(self.warehouse.schema("prod"),)))
        context = {"run_id": f"manual__{time.monotonic_ns()}", "params": dict(params or {}),
                   "dag_run": type("DagRun", (), {"run_type": "manual"})()}
        [stream] = discover_identify_streams(runtime)
        with amberflo_connection(self.emulator.url, self.key):
            result = run_identify_stream(stream, context, runtime)
        return RunStats(**{k: v for k, v in result.items() if k in RunStats.__dataclass_fields__
                           and k not in ("started_at", "finished_at")})

    def customer(self, customer_id: str = "some_user_id") -> dict:
        customer = dict(self.emulator.customers()[customer_id])
        customer.pop("createTime", None), customer.pop("updateTime", None)
        return customer

    def api_calls(self) -> int:
        s = self.emulator.stats()
        return s["customer_gets"] + s["customer_posts"] + s["customer_puts"]

    def amberflo_put(self, body: dict) -> None:
        response = requests.put(f"{self.emulator.url}/customers", json=body, headers={"X-API-KEY": self.key}, timeout=5)
        response.raise_for_status()


@pytest.fixture(params=[1, 1000], ids=["bulk-read", "get-each"])
def customers(request, warehouse, emulator, api_key, sqlite_state_url):
    h = CustomersHarness(warehouse, emulator, api_key, sqlite_state_url, bulk_read_threshold=request.param)
    yield h
    h.reader.engine.dispose()


def test_seed_identify_becomes_the_seed_customer(customers):
    customers.load([SEED_TRAITS])
    stats = customers.sync()
    assert stats.details["customers_created"] == 1
    assert customers.customer() == {
        "customerId": "some_user_id", "customerName": "John Doe", "customerEmail": "john.doe@email.com",
        "traits": {"avatar": "https:__s3.amazonaws.com_uifaces_faces_twitter_scottkclark_128.jpg", "logins": "5",
                   "phone": "650-769-3240", "plan": "premium", "username": "marakasina", "website": "example.com"},
    }


def test_traits_merge_across_identify_calls_and_runs(customers):
    customers.load([{"name": "J", "plan": "free"}, {"plan": "pro", "seats": 2}])
    customers.sync()
    customers.load([{"plan": None, "seats": 5, "region": "eu"}])
    customers.sync()
    assert customers.customer()["traits"] == {"plan": "pro", "region": "eu", "seats": "5"}
    assert customers.customer()["customerName"] == "J"


def test_unchanged_customer_costs_zero_api_calls(customers):
    customers.load([{"name": "J", "plan": "pro"}])
    customers.sync()
    before = customers.api_calls()
    customers.sync()  # same window re-read (overlap): nothing changed
    customers.load([{"plan": "pro"}])  # a new identify with the same values
    stats = customers.sync()
    assert customers.api_calls() == before
    assert stats.details["customers_unchanged"] == 1 and stats.details["customers_updated"] == 0


def test_stripe_id_set_in_amberflo_survives_every_later_update(customers):
    customers.load([{"name": "J", "plan": "free"}])
    customers.sync()
    live = customers.customer()
    customers.amberflo_put({**live, "traits": {**live["traits"], "stripeId": "cus_123"}, "enabled": True})
    for plan in ("pro", "enterprise"):
        customers.load([{"plan": plan}])
        customers.sync()
    customer = customers.customer()
    assert customer["traits"] == {"plan": "enterprise", "stripeId": "cus_123"} and customer["enabled"] is True


def test_first_meeting_reads_amberflo_so_foreign_traits_and_name_survive(customers):
    customers.amberflo_put  # noqa: B018 - documented below
    requests.post(f"{customers.emulator.url}/customers", headers={"X-API-KEY": customers.key}, timeout=5,
                  json={"customerId": "some_user_id", "customerName": "Acme", "traits": {"stripeId": "cus_9"}})
    customers.load([{"plan": "pro"}])
    stats = customers.sync()
    assert stats.details["customers_updated"] == 1
    assert customers.customer() == {"customerId": "some_user_id", "customerName": "Acme",
                                    "traits": {"plan": "pro", "stripeId": "cus_9"}}


def test_customer_deleted_by_hand_is_recreated_on_its_next_change(customers):
    customers.load([{"name": "J", "plan": "free"}])
    customers.sync()
    requests.delete(f"{customers.emulator.url}/customers/some_user_id", headers={"X-API-KEY": customers.key}, timeout=5)
    customers.load([{"plan": "pro"}])
    customers.sync()
    assert customers.customer() == {"customerId": "some_user_id", "customerName": "J", "traits": {"plan": "pro"}}


def test_identify_without_user_id_is_skipped_not_an_error(customers):
    customers.load([{"plan": "a"}, {"plan": "b", "user_id": None}])
    stats = customers.sync()
    assert (stats.read, stats.skipped, stats.status) == (2, 1, "success")


def test_many_customers_are_written_concurrently(warehouse, emulator, api_key, sqlite_state_url):
    h = CustomersHarness(warehouse, emulator, api_key, sqlite_state_url, concurrency=8, bulk_read_threshold=50)
    frame = identify_rows([{"plan": "pro", "user_id": f"user_{i:03d}"} for i in range(120)], loaded=BASE_TIME)
    warehouse.write("prod", "identifies", frame)
    stats = h.sync()
    assert stats.details["customers_created"] == 120 and len(emulator.customers()) == 120
    assert emulator.stats()["customer_gets"] == 1  # one bulk list call instead of 120 GETs


def test_the_customers_lock_keeps_two_writers_apart(sqlite_state_url):
    state = StateStore.from_url(sqlite_state_url)
    state.create()
    order: list[str] = []

    def hold(name: str) -> None:
        with state.lock("customers", holder=name, poll=0.01):
            order.append(f"{name}-in")
            time.sleep(0.2)
            order.append(f"{name}-out")

    threads = [threading.Thread(target=hold, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert order[0][2:] == "in" and order[1][2:] == "out" and order[0][0] == order[1][0]
    with pytest.raises(TimeoutError), state.lock("customers", holder="x"):
        with state.lock("customers", holder="y", timeout=0.1, poll=0.01):
            pass


def test_a_refused_customer_is_retried_later_with_its_full_record(customers):
    """Its identify rows have left the overlap window by then: the retry must come from the merged
    values kept in the state (once it was re-created with only its id: no name, email or traits)."""
    from amberflo_sync.emulator import FaultConfig

    customers.emulator.set_faults(FaultConfig(refuse_customer_writes=("some_user_id",)))
    customers.load([SEED_TRAITS])
    assert customers.sync().rejected == 1
    customers.load([{"user_id": "someone_else", "name": "Other"}])  # 3 h later: the refused rows are old
    customers.sync()  # still refused: one more attempt
    customers.emulator.set_faults(FaultConfig())
    stats = customers.sync()
    assert stats.details["rejected_resolved"] == 1
    customer = customers.customer()
    assert customer["customerName"] == "John Doe" and customer["customerEmail"] == "john.doe@email.com"
    assert customer["traits"]["plan"] == "premium"
    assert customers.ledger.rejected_rows() == []
