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
import gc
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
    "usage_requests",
    "cancelled",
    "lost",
    "doubled",
)

#: The dimension that turns an ingested record into the cancellation of an earlier one (Amberflo's
#: documented mechanism: re-send the record with this dimension set to "true").
CANCEL_DIMENSION = "aflo.cancel_previous_resource_event"
#: The dimension the ``rate_double`` fault adds to the second, different copy of a record.
COPY_DIMENSION = "emulator_copy"


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
        self._reset_usage_state()

    def _reset_usage_state(self) -> None:
        """Cancellations, drift bookkeeping and the decoded columns usage queries read."""
        self._cancelled: set[int] = set()  # positions in _identities
        self._lost: list[dict[str, Any]] = []
        self._doubled: list[dict[str, Any]] = []
        self._version = getattr(self, "_version", 0) + 1  # bumped by every change, never reset
        self._decoded: dict[str, list[Any]] = {"uniqueId": [], "customerId": [], "meterApiName": [], "millis": []}

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
            self._reset_usage_state()

    # --- meter records ----------------------------------------------------------------------------

    def add_meter_records(
        self,
        batch: MeterBatch,
        announce: Callable[[], None] | None = None,
        *,
        drift: tuple[list[int], list[int]] | None = None,
        cancellations: list[int] | None = None,
    ) -> int:
        """Store the records of one accepted request, skipping duplicates; returns how many were new.

        Counts them into ``received``, ``distinct`` and ``duplicates`` (``ingest_requests`` is counted
        by the caller, before validation).

        :param batch: the validated records.
        :param announce: called with the lock held *before* the records are stored — the server
            sends its answer there, so that the client prepares its next request while the
            identities are built. Readers wait for the lock, so they still see all or nothing, and
            never an answer without its records.
        :param drift: ``(lose, double)`` record positions from the drift faults: records to leave
            out silently, and records to store a second time with different bytes.
        :param cancellations: positions of cancellation records (dimension
            :data:`CANCEL_DIMENSION` = ``"true"``): they cancel the stored record they repeat and are
            not stored themselves.
        """
        if drift is not None or cancellations:
            return self._add_with_extras(batch, announce, drift, cancellations or [])
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
            if added:
                self._version += 1
        return added

    def _add_with_extras(
        self,
        batch: MeterBatch,
        announce: Callable[[], None] | None,
        drift: tuple[list[int], list[int]] | None,
        cancellations: list[int],
    ) -> int:
        """The slow path of :meth:`add_meter_records`: cancellations and drift faults, record by record."""
        lose, double = (set(drift[0]), set(drift[1])) if drift is not None else (set(), set())
        cancel = set(cancellations)
        identities = batch.identities()
        with self._lock:
            if announce is not None:
                announce()
            counters = self._counters
            added = 0
            for index, (identity, meter_value) in enumerate(zip(identities, batch.meter_values)):
                counters["received"] += 1
                if index in cancel:
                    self._cancel(identity)
                    continue
                if identity in self._seen:
                    counters["duplicates"] += 1
                    continue
                counters["distinct"] += 1
                added += 1
                if index in lose:  # accepted, answered 200, never stored (nor remembered): missing usage
                    counters["lost"] += 1
                    self._lost.append(record_from_identity(identity, meter_value))
                    continue
                self._seen.add(identity)
                self._identities.append(identity)
                self._meter_values.append(meter_value)
                if index in double:  # a second copy with other bytes: a double bill
                    record = record_from_identity(identity, meter_value)
                    copy_record = {**record, "dimensions": {**record.get("dimensions", {}), COPY_DIMENSION: "true"}}
                    copy_identity = _identity_of(copy_record)
                    self._seen.add(copy_identity)
                    self._identities.append(copy_identity)
                    self._meter_values.append(meter_value)
                    counters["doubled"] += 1
                    self._doubled.append(record_from_identity(copy_identity, meter_value))
            self._version += 1
        return added

    def _cancel(self, cancellation_identity: bytes) -> None:
        """Cancel the stored record a cancellation record repeats (lock held).

        The record with exactly the same fields (the cancel dimension aside) is cancelled; when there
        is none, the latest live record with the same ``uniqueId`` and meter. A cancelled record no
        longer counts in usage or events and may be sent again (a corrected re-send is new).
        """
        unique_id, customer_id, meter, value, millis, dimensions = orjson.loads(cancellation_identity)
        dimensions = {k: v for k, v in (dimensions or {}).items() if k != CANCEL_DIMENSION} or None
        target = orjson.dumps((unique_id, customer_id, meter, value, millis, dimensions), option=orjson.OPT_SORT_KEYS)
        position = None
        start = 0
        identities = self._identities
        while True:
            try:
                found = identities.index(target, start)
            except ValueError:
                break
            if found not in self._cancelled:
                position = found
                break
            start = found + 1
        if position is None:
            self._decode_new()
            decoded = self._decoded
            for index in range(len(identities) - 1, -1, -1):
                if (index not in self._cancelled and decoded["uniqueId"][index] == unique_id
                        and decoded["meterApiName"][index] == meter):
                    position = index
                    break
        if position is None:
            return  # nothing to cancel: like Amberflo, silently nothing
        self._cancelled.add(position)
        self._seen.discard(identities[position])
        self._counters["cancelled"] += 1

    def _decode_new(self) -> None:
        """Decode the identities stored since the last call into columns (lock held)."""
        decoded = self._decoded
        done = len(decoded["uniqueId"])
        if done == len(self._identities):
            return
        # One parse of all new identities as a JSON array, with the cyclic GC paused: a million new
        # lists would otherwise trigger collections that walk every object again and again (7 µs
        # per record instead of well under 1).
        enabled = gc.isenabled()
        gc.disable()
        try:
            rows = orjson.loads(b"[" + b",".join(self._identities[done:]) + b"]")
            columns = list(zip(*rows))
            del rows
        finally:
            if enabled:
                gc.enable()
        for position, name in ((0, "uniqueId"), (1, "customerId"), (2, "meterApiName"), (4, "millis")):
            decoded[name].extend(columns[position])

    def usage_columns(self) -> tuple[int, dict[str, list[Any]], list[int | float], frozenset[int]]:
        """``(version, columns, meter values, cancelled positions)`` of every stored record.

        Columns are ``uniqueId``, ``customerId``, ``meterApiName`` and ``millis`` lists aligned with
        the stored records (decoded incrementally, so repeated usage queries pay only for new
        records); the lists are copies' views taken under the lock (callers must not mutate them).
        """
        with self._lock:
            self._decode_new()
            n = len(self._identities)
            columns = {name: values[:n] for name, values in self._decoded.items()}
            return self._version, columns, self._meter_values[:n], frozenset(self._cancelled)

    def stored_record(self, position: int) -> dict[str, Any]:
        """The stored record at ``position`` (as :meth:`records` shows it)."""
        with self._lock:
            return record_from_identity(self._identities[position], self._meter_values[position])

    def drift(self) -> dict[str, list[dict[str, Any]]]:
        """What the drift faults did: records ``lost`` (never stored) and the ``doubled`` copies."""
        with self._lock:
            return {"lost": copy.deepcopy(self._lost), "doubled": copy.deepcopy(self._doubled)}

    def records(self, meter_api_name: str | None = None) -> list[dict[str, Any]]:
        """Distinct stored records in arrival order, known fields only (dimensions sorted by name);
        cancelled records are left out.

        :param meter_api_name: only records of this meter, when given.
        """
        with self._lock:
            cancelled = self._cancelled
            pairs = [pair for index, pair in enumerate(zip(self._identities, self._meter_values))
                     if index not in cancelled] if cancelled else list(zip(self._identities, self._meter_values))
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


def _identity_of(record: dict[str, Any]) -> bytes:
    """The identity (see ``MeterBatch.identities``) of one record dict."""
    return orjson.dumps(
        (record["uniqueId"], record["customerId"], record["meterApiName"], float(record["meterValue"]),
         record["meterTimeInMillis"], record.get("dimensions") or None),
        option=orjson.OPT_SORT_KEYS,
    )
