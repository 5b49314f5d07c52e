"""Write full customer records to Amberflo: only changed customers, concurrently, never clobbering.

Shared by the identify sync and the Engage sync. For every customer the planner merges the new
updates over the stored state (:mod:`amberflo_sync.customers`); an unchanged fingerprint costs zero
API calls. Changed customers are written on the client's pooled session by a bounded thread pool:
Amberflo's live record is read first (one ``GET /customers`` list when many customers changed, else
one ``GET`` each) so that fields and traits the project does not own survive the replace; ``POST``
creates, ``PUT`` replaces, and an unexpected "already exists"/"not found" is resolved by reading the
customer and trying the other verb, once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from amberflo_sync.client import AmberfloAuthError, AmberfloClient, AmberfloRejectedError
from amberflo_sync.customers import CustomerState, apply_updates, customer_body, same_customer
from amberflo_sync.state import StateStore

log = logging.getLogger(__name__)

#: Rejected-row reason for a customer Amberflo refused (a 4xx other than 429/401/403).
AMBERFLO_REJECTED_CUSTOMER = "amberflo_rejected_customer"


class CustomerRejected(Exception):
    """Amberflo refused one customer (not retryable); the run goes on and records it as rejected."""

    def __init__(self, rejected_row: dict[str, Any], state: CustomerState) -> None:
        super().__init__(rejected_row["row"]["error"])
        self.rejected_row = rejected_row
        self.state = state


@dataclass
class WriteResult:
    """What one write pass did."""

    considered: int = 0
    unchanged: int = 0
    created: int = 0
    updated: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    planned: list[dict[str, Any]] = field(default_factory=list)

    @property
    def written(self) -> int:
        return self.created + self.updated

    def details(self) -> dict[str, int]:
        return {
            "customers_created": self.created,
            "customers_updated": self.updated,
            "customers_unchanged": self.unchanged,
            "customers_rejected": len(self.rejected),
        }


class CustomerWriter:
    """Plans and performs customer writes.

    :param client: Amberflo client (its session is shared by the worker threads).
    :param state: state store holding each customer's last known state.
    :param concurrency: parallel API calls (default from the connection's ``concurrency``).
    :param bulk_read_threshold: from this many changed customers on, read Amberflo's live records with
        one list call instead of one ``GET`` per customer.
    :param create_in_stripe: create new customers with ``autoCreateCustomerInStripe=true``.
    :param progress_every_seconds: how often to log progress.
    """

    def __init__(
        self,
        client: AmberfloClient | None,
        state: StateStore,
        *,
        concurrency: int = 8,
        bulk_read_threshold: int = 200,
        create_in_stripe: bool = False,
        progress_every_seconds: float = 10.0,
    ) -> None:
        self.client = client
        self.state = state
        self.concurrency = max(1, concurrency)
        self.bulk_read_threshold = bulk_read_threshold
        self.create_in_stripe = create_in_stripe
        self.progress_every_seconds = progress_every_seconds

    def plan(self, updates: Mapping[str, Mapping[str, tuple[str, int]]], customers: set[str]) -> tuple[
        list[CustomerState], list[CustomerState], dict[str, CustomerState]
    ]:
        """Split customers into ``changed`` (to write) and ``touched`` (newer times, same content).

        :returns: ``(changed, touched, known)``.
        """
        ids = sorted(set(updates) | set(customers))
        known = self.state.load_customers(ids)
        changed: list[CustomerState] = []
        touched: list[CustomerState] = []
        for customer_id in ids:
            base = known.get(customer_id) or CustomerState(customer_id)
            merged = apply_updates(base, updates.get(customer_id, {}))
            # a stored state without a record was never accepted by Amberflo (refused): write it again
            if customer_id in known and base.record is not None and merged.fingerprint() == base.fingerprint():
                if merged.times != base.times:
                    touched.append(merged)
                continue
            changed.append(merged)
        return changed, touched, known

    def write(
        self,
        updates: Mapping[str, Mapping[str, tuple[str, int]]],
        customers: set[str] | None = None,
        *,
        dry_run_limit: int | None = None,
    ) -> WriteResult:
        """Merge ``updates`` into the customers and write the changed ones.

        :param updates: ``{customer_id: {field: (value, time_ms)}}``.
        :param customers: customers seen without any field update (created with their id as name).
        :param dry_run_limit: when set, write nothing: return up to this many planned bodies.
        """
        changed, touched, known = self.plan(updates, customers or set())
        result = WriteResult(considered=len(changed) + len(touched))
        result.unchanged = len(set(updates) | set(customers or set())) - len(changed)
        if dry_run_limit is not None:
            for state in changed[:dry_run_limit]:
                result.planned.append(customer_body(state, (known.get(state.customer_id) or state).record))
            return result
        self.state.save_customers(touched)
        if not changed:
            return result
        assert self.client is not None, "a client is needed to write customers"
        live_all = self._bulk_live() if len(changed) >= self.bulk_read_threshold else None
        lock = threading.Lock()
        done: list[CustomerState] = []
        started = last_log = time.monotonic()

        def work(state: CustomerState) -> None:
            nonlocal last_log
            outcome, saved = self._write_one(state, live_all)
            with lock:
                if outcome == "created":
                    result.created += 1
                elif outcome == "updated":
                    result.updated += 1
                elif outcome == "unchanged":
                    result.unchanged += 1
                if saved is not None:
                    done.append(saved)
                now = time.monotonic()
                if now - last_log >= self.progress_every_seconds:
                    last_log = now
                    n = result.written + result.unchanged
                    log.info("customers: %d of %d written, %.0f customers/s", n, len(changed), n / (now - started))

        try:
            with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="amberflo-customers") as pool:
                for future in [pool.submit(work, s) for s in changed]:
                    try:
                        future.result()
                    except CustomerRejected as exc:
                        result.rejected.append(exc.rejected_row)
                        # its merged values are kept (without a record), so a retry sends the full record
                        done.append(replace(exc.state, record=None))
        finally:
            # whatever was written is remembered, so a re-run does not write it again
            self.state.save_customers(done)
        return result

    # -- one customer ---------------------------------------------------------------------------
    def _bulk_live(self) -> dict[str, dict[str, Any]]:
        assert self.client is not None
        return {c["customerId"]: c for c in self.client.list_customers() if c.get("customerId")}

    def _write_one(
        self, state: CustomerState, live_all: dict[str, dict[str, Any]] | None
    ) -> tuple[str, CustomerState | None]:
        assert self.client is not None
        live = live_all.get(state.customer_id) if live_all is not None else self.client.get_customer(state.customer_id)
        body = customer_body(state, live)
        if same_customer(body, live):
            return "unchanged", replace(state, record=body)
        try:
            if live is None:
                try:
                    self.client.create_customer(body, create_in_stripe=self.create_in_stripe)
                    return "created", replace(state, record=body)
                except AmberfloRejectedError as exc:
                    if not _already_exists(exc):
                        raise
                live = self.client.get_customer(state.customer_id)
                body = customer_body(state, live)
                self.client.replace_customer(body)
                return "updated", replace(state, record=body)
            try:
                self.client.replace_customer(body)
                return "updated", replace(state, record=body)
            except AmberfloRejectedError as exc:
                if not _not_found(exc):
                    raise
            # deleted in Amberflo (by hand) since we read it: re-create it from what the project owns
            body = customer_body(state, None)
            self.client.create_customer(body, create_in_stripe=self.create_in_stripe)
            return "created", replace(state, record=body)
        except AmberfloRejectedError as exc:
            if isinstance(exc, AmberfloAuthError):
                raise
            log.warning("customer %s rejected by Amberflo: %s", state.customer_id, exc.detail)
            raise CustomerRejected(
                {"id": state.customer_id, "reason": AMBERFLO_REJECTED_CUSTOMER, "row": {"body": body, "error": exc.detail}},
                state,
            ) from exc


def _already_exists(exc: AmberfloRejectedError) -> bool:
    return exc.status == 409 or "already exists" in exc.detail.lower()


def _not_found(exc: AmberfloRejectedError) -> bool:
    return exc.status == 404 or "not found" in exc.detail.lower()
