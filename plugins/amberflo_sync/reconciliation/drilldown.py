"""The exact records behind a drifted cell, and the repair that is safe to make.

For each drifted meter × customer × hour, Amberflo's raw records (``GET /usage/events``, paged) are
compared with the records the warehouse expects there, by their *canonical form* — the six fields,
``meterValue`` as a number, dimensions sorted — which is what Amberflo's de-duplication compares:

* **missing** uniqueIds: expected here, not in Amberflo's cell at all;
* **unexpected** uniqueIds: in Amberflo's cell, not expected here (a record for the wrong customer,
  hour or meter, or one the warehouse no longer has);
* **different bytes**: the uniqueId is on both sides but Amberflo holds another version of it (too)
  — the signature of a double bill.

Repair (only when asked): every expected record Amberflo lacks byte-identically is re-sent as the
sync rendered it (Amberflo drops what it already has); every record Amberflo holds that is not
expected is cancelled by re-sending it with ``aflo.cancel_previous_resource_event: "true"`` — but
only when it is the project's: its uniqueId is a Segment message id that the project's mapping bills
on that meter in the window. A record with any other uniqueId was sent by someone else and is never
cancelled; it stays in the report as *foreign*.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from amberflo_sync.reconciliation.expected import ExpectedRecords

log = logging.getLogger(__name__)

CANCEL_DIMENSION = "aflo.cancel_previous_resource_event"


class EventsClient(Protocol):
    def usage_events(self, meter_api_name: str, *, start_seconds: int, end_seconds: int,
                     customer_id: str | None = None, page_size: int = 1000) -> Iterable[dict[str, Any]]: ...


@dataclass
class CellDrill:
    """What is behind one drifted cell (ids sorted, for stable reports and tests)."""

    meter: str
    customer: str
    hour: int
    status: str
    missing_ids: list[str] = field(default_factory=list)
    unexpected_ids: list[str] = field(default_factory=list)
    different_bytes_ids: list[str] = field(default_factory=list)
    to_resend: list[str] = field(default_factory=list)
    to_cancel: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RepairPlan:
    """Records to re-send (the sync's exact JSON), to cancel (Amberflo's records), and the foreign
    records refused for cancellation."""

    resend: list[str] = field(default_factory=list)
    cancel: list[dict[str, Any]] = field(default_factory=list)
    foreign: list[dict[str, Any]] = field(default_factory=list)

    def cancellation_records(self) -> list[str]:
        """The cancellation records: each record to cancel, with the cancel dimension added."""
        return [cancellation_json(record) for record in self.cancel]


def canonical(record: dict[str, Any]) -> bytes:
    """The identity Amberflo de-duplicates on: six fields, the value as a float, dimensions sorted."""
    return orjson.dumps(
        [record.get("uniqueId"), record.get("customerId"), record.get("meterApiName"),
         float(record.get("meterValue") or 0.0), record.get("meterTimeInMillis"), record.get("dimensions") or None],
        option=orjson.OPT_SORT_KEYS,
    )


def cancellation_json(record: dict[str, Any]) -> str:
    """``record`` re-sent with ``aflo.cancel_previous_resource_event: "true"`` (Amberflo's mechanism)."""
    dimensions = dict(record.get("dimensions") or {})
    dimensions[CANCEL_DIMENSION] = "true"
    body = {"uniqueId": record["uniqueId"], "customerId": record["customerId"],
            "meterApiName": record["meterApiName"], "meterValue": record["meterValue"],
            "meterTimeInMillis": record["meterTimeInMillis"], "dimensions": dict(sorted(dimensions.items()))}
    return orjson.dumps(body).decode()


def drill_down(client: EventsClient, drifted: pd.DataFrame, expected: ExpectedRecords, *,
               page_size: int = 1000) -> list[CellDrill]:
    """Compare Amberflo's raw records with the expected ones, cell by drifted cell."""
    expected_rows = expected.in_cells(drifted)
    by_cell: dict[tuple[str, str, int], list[str]] = {}
    for meter, customer, hour, text in zip(expected_rows.get("meter", []), expected_rows.get("customer", []),
                                           expected_rows.get("hour", []), expected_rows.get("record", [])):
        by_cell.setdefault((meter, customer, int(hour)), []).append(text)
    drills = []
    for cell in drifted.itertuples(index=False):
        key = (cell.meter, cell.customer, int(cell.hour))
        billed = list(client.usage_events(cell.meter, customer_id=cell.customer, start_seconds=key[2],
                                          end_seconds=key[2] + 3600, page_size=page_size))
        drills.append(_drill_cell(key, str(cell.status), by_cell.get(key, []), billed))
    return drills


def _drill_cell(key: tuple[str, str, int], status: str, expected_texts: list[str],
                billed: list[dict[str, Any]]) -> CellDrill:
    expected_by_form = {canonical(orjson.loads(text)): text for text in expected_texts}
    expected_ids = {orjson.loads(text)["uniqueId"] for text in expected_texts}
    billed_forms = Counter(canonical(record) for record in billed)
    billed_ids = {record["uniqueId"] for record in billed}
    drill = CellDrill(*key, status=status)
    drill.missing_ids = sorted(expected_ids - billed_ids)
    drill.unexpected_ids = sorted(billed_ids - expected_ids)
    drill.to_resend = [text for form, text in expected_by_form.items() if form not in billed_forms]
    seen: Counter[bytes] = Counter()
    different = set()
    for record in billed:
        form = canonical(record)
        seen[form] += 1
        if form in expected_by_form and seen[form] == 1:
            continue  # the expected record, once
        drill.to_cancel.append(record)
        if record["uniqueId"] in expected_ids:
            different.add(record["uniqueId"])
    drill.different_bytes_ids = sorted(different)
    return drill


def plan_repair(drills: Sequence[CellDrill], expected: ExpectedRecords) -> RepairPlan:
    """What a repair sends: every record to re-send, and cancellations for the project's records only."""
    plan = RepairPlan()
    candidates: list[dict[str, Any]] = []
    for drill in drills:
        plan.resend.extend(drill.to_resend)
        candidates.extend(drill.to_cancel)
    if candidates:
        ours = _billed_by_project(expected, candidates)
        for record, is_ours in zip(candidates, ours):
            (plan.cancel if is_ours else plan.foreign).append(record)
    return plan


def _billed_by_project(expected: ExpectedRecords, records: Sequence[dict[str, Any]]) -> list[bool]:
    """Whether each record's (meter, uniqueId) is one the project's mapping bills in the window."""
    if expected.records.num_rows == 0:
        return [False] * len(records)
    keys = pc.binary_join_element_wise(expected.records["meter"], expected.records["uniqueId"],
                                       pa.scalar("\x00", pa.large_string()))
    wanted = pa.array([f"{r['meterApiName']}\x00{r['uniqueId']}" for r in records], pa.large_string())
    return pc.is_in(wanted, value_set=keys).to_pylist()
