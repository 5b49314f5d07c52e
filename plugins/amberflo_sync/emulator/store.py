"""Thread-safe in-memory state of the emulator: meter records, customers and counters.

Everything the tests and benchmarks assert on lives here, behind one lock, so that a request handled
on one server thread is fully visible (or not at all) to a ``stats()`` call on another.

Meter records are kept as their canonical identity bytes (see
:func:`~amberflo_sync.emulator.validation.validate_meter_records`) plus the original ``meterValue``:
bytes are compact and not tracked by the garbage collector, which keeps millions of stored records
from slowing every later request down.
"""

from __future__ import annotations

import copy
import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

from .faults import FAULT_KINDS
from .validation import MeterBatch, record_from_identity

#: Every counter reported by :meth:`EmulatorStore.stats`, all starting at 0.
COUNTERS = (
    "requests",
    "ingest_requests",
    "received",
    "distinct",
    "duplicates",
    "rejected_requests",
    "unauthorized",
    "customer_gets",
    "customer_posts",
    "customer_puts",
    "customer_deletes",
    *(f"fault_{kind}" for kind in FAULT_KINDS),
)


class CustomerExistsError(KeyError):
    """``POST /customers`` for an id that is already taken."""


class CustomerNotFoundError(KeyError):
    """``PUT /customers`` for an id that does not exist."""


def stripe_id_for(customer_id: str) -> str:
    """The deterministic Stripe id the emulator gives a customer created with Stripe.

    Deterministic so that tests can predict it; shaped like Stripe's (``cus_`` + 14 characters).
    """
    return "cus_" + hashlib.sha256(customer_id.encode("utf-8")).hexdigest()[:14]


def _now_millis() -> int:
    return time.time_ns() // 1_000_000


class EmulatorStore:
    """In-memory records, customers and counters, safe to use from many server threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: set[bytes] = set()
        self._identities: list[bytes] = []
        self._meter_values: list[int | float] = []
        self._customers: dict[str, dict[str, Any]] = {}
        self._counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)

    # --- counters ------------------------------------------------------------------------------

    def count(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``name`` (one of :data:`COUNTERS`)."""
        with self._lock:
            self._counters[name] += amount

    def stats(self) -> dict[str, int]:
        """A snapshot of every counter."""
        with self._lock:
            return dict(self._counters)

    def reset(self) -> None:
        """Forget every record, customer and counter."""
        with self._lock:
            self._seen = set()
            self._identities = []
            self._meter_values = []
            self._customers = {}
            self._counters = dict.fromkeys(COUNTERS, 0)

    # --- meter records ----------------------------------------------------------------------------

    def add_meter_records(
        self, batch: MeterBatch, announce: Callable[[], None] | None = None
    ) -> int:
        """Store the records of one accepted request, skipping duplicates; returns how many were new.

        Counts them into ``received``, ``distinct`` and ``duplicates`` (``ingest_requests`` is counted
        by the caller, before validation).

        :param batch: the validated records.
        :param announce: called with the lock held *before* the records are stored — the server
            sends its answer there, so that the client prepares its next request while the
            identities are built. Readers wait for the lock, so they still see all or nothing, and
            never an answer without its records.
        """
        with self._lock:
            if announce is not None:
                announce()
            identities = batch.identities()
            meter_values = batch.meter_values
            seen = self._seen
            before = len(seen)
            unique = set(identities)
            if len(unique) == len(identities) and seen.isdisjoint(unique):
                # The usual case, in bulk: nothing in the request was seen before.
                seen.update(unique)
                self._identities.extend(identities)
                self._meter_values.extend(meter_values)
            else:
                for identity, meter_value in zip(identities, meter_values):
                    if identity not in seen:
                        seen.add(identity)
                        self._identities.append(identity)
                        self._meter_values.append(meter_value)
            added = len(seen) - before
            counters = self._counters
            counters["received"] += len(identities)
            counters["distinct"] += added
            counters["duplicates"] += len(identities) - added
        return added

    def records(self, meter_api_name: str | None = None) -> list[dict[str, Any]]:
        """Distinct stored records in arrival order, known fields only (dimensions sorted by name).

        :param meter_api_name: only records of this meter, when given.
        """
        with self._lock:
            pairs = list(zip(self._identities, self._meter_values))
        records = [record_from_identity(identity, value) for identity, value in pairs]
        if meter_api_name is None:
            return records
        return [record for record in records if record["meterApiName"] == meter_api_name]

    def records_json(self, meter_api_name: str | None = None) -> bytes:
        """:meth:`records` serialized as a JSON array."""
        return orjson.dumps(self.records(meter_api_name))

    # --- customers --------------------------------------------------------------------------------

    def get_customer(self, customer_id: str) -> dict[str, Any] | None:
        """A copy of the customer, or ``None`` when it does not exist."""
        with self._lock:
            customer = self._customers.get(customer_id)
            return copy.deepcopy(customer) if customer is not None else None

    def customers(self) -> dict[str, dict[str, Any]]:
        """A copy of every customer, by id, in creation order."""
        with self._lock:
            return copy.deepcopy(self._customers)

    def create_customer(self, customer: dict[str, Any], *, with_stripe: bool) -> dict[str, Any]:
        """Create a validated customer and return what is stored.

        :param customer: output of ``validate_customer``.
        :param with_stripe: add a ``stripeId`` trait, as ``?autoCreateCustomerInStripe=true`` does.
        :raises CustomerExistsError: when the id is taken.
        """
        stored = copy.deepcopy(customer)
        if with_stripe:
            stored["traits"]["stripeId"] = stripe_id_for(stored["customerId"])
        with self._lock:
            if stored["customerId"] in self._customers:
                raise CustomerExistsError(stored["customerId"])
            stored["createTime"] = stored["updateTime"] = _now_millis()
            self._customers[stored["customerId"]] = stored
            return copy.deepcopy(stored)

    def replace_customer(self, customer: dict[str, Any]) -> dict[str, Any]:
        """Replace a customer wholesale (fields and traits not given are gone); return it.

        ``createTime`` is kept and ``updateTime`` always moves forward.

        :raises CustomerNotFoundError: when the id does not exist.
        """
        stored = copy.deepcopy(customer)
        with self._lock:
            previous = self._customers.get(stored["customerId"])
            if previous is None:
                raise CustomerNotFoundError(stored["customerId"])
            stored["createTime"] = previous["createTime"]
            stored["updateTime"] = max(_now_millis(), previous["updateTime"] + 1)
            self._customers[stored["customerId"]] = stored
            return copy.deepcopy(stored)

    def delete_customer(self, customer_id: str) -> dict[str, Any] | None:
        """Remove a customer (simulating a deletion by hand); return it, or ``None`` if missing."""
        with self._lock:
            return self._customers.pop(customer_id, None)
