"""The emulator's usage API: ``POST /usage``, ``/usage/batch``, ``/usage/sparse`` and ``GET /usage/events``.

Answers are computed from what the emulator *stored* — after its de-duplication, after cancellations,
and after any drift fault (a lost record is not there, a doubled one is there twice) — so a
reconciliation that compares the warehouse with these answers sees exactly the drift a test injected.
The request and answer shapes follow ``shared/spec/amberflo-api.md`` ("Usage"):

* query: ``meterApiName``, ``aggregation`` (SUM, COUNT, MIN, MAX), ``timeGroupingInterval`` (HOUR,
  DAY, WEEK, MONTH), ``timeRange`` (``startTimeInSeconds`` inclusive, ``endTimeInSeconds``
  exclusive, default now), ``groupBy`` (``["customerId"]`` or nothing), ``filter`` (``customerId``
  list; other keys are refused — the emulator does not index dimensions), ``take`` (``limit``,
  ``isAscending``: groups ordered by ``groupValue``).
* answer: ``metadata`` (the query), ``secondsSinceEpochIntervals`` (bucket starts) and
  ``clientMeters`` (per group: ``group.groupInfo``, ``groupValue``, ``values`` of ``value`` and
  ``secondsSinceEpochUtc``). The dense form fills empty buckets with 0; the sparse one leaves them out.
* events: records of one meter (optionally one customer) in a time range, ordered by time, paged by
  an opaque ``nextPageToken``, as ``columns`` + ``rows``.

Usage is computed with Arrow over columns the store decodes once (incrementally), cached per store
version, so a batch of queries over a million records costs one filter and one group-by each.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
import time
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from .store import EmulatorStore

AGGREGATIONS = ("SUM", "COUNT", "MIN", "MAX")
INTERVALS = ("HOUR", "DAY", "WEEK", "MONTH")
#: Columns of ``GET /usage/events`` rows, in order.
EVENT_COLUMNS = ["uniqueId", "customerId", "meterApiName", "meterValue", "meterTimeInMillis", "dimensions"]
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 5000


class UsageQueryError(ValueError):
    """A usage query the emulator cannot answer (answered 400 with this message)."""


class UsageIndex:
    """The stored records as an Arrow table, rebuilt only when the store changed."""

    def __init__(self, store: EmulatorStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._version = -1
        self._table: pa.Table | None = None

    def table(self) -> pa.Table:
        """Live records: ``position``, ``uniqueId``, ``customerId``, ``meterApiName``, ``millis``,
        ``seconds``, ``value`` (cancelled records left out)."""
        with self._lock:
            version, columns, values, cancelled = self._store.usage_columns()
            if self._table is not None and version == self._version:
                return self._table
            millis = pa.array(columns["millis"], pa.int64())
            table = pa.table({
                "position": pa.array(np.arange(len(millis), dtype=np.int64)),
                "uniqueId": pa.array(columns["uniqueId"], pa.string()),
                "customerId": pa.array(columns["customerId"], pa.string()),
                "meterApiName": pa.array(columns["meterApiName"], pa.string()),
                "millis": millis,
                "seconds": pc.divide(millis, 1000),  # integer division; times are positive
                "value": pa.array(values, pa.float64()),
            })
            if cancelled:
                keep = pc.invert(pc.is_in(table["position"], value_set=pa.array(sorted(cancelled), pa.int64())))
                table = table.filter(keep)
            self._table, self._version = table, version
            return table


def _select(table: pa.Table, meter: str, start: int, end: int, customers: list[str] | None) -> pa.Table:
    mask = pc.and_(pc.equal(table["meterApiName"], meter),
                   pc.and_(pc.greater_equal(table["seconds"], start), pc.less(table["seconds"], end)))
    if customers is not None:
        mask = pc.and_(mask, pc.is_in(table["customerId"], value_set=pa.array(customers, pa.string())))
    return table.filter(mask)


def answer_usage(index: UsageIndex, query: Any, *, sparse: bool) -> dict[str, Any]:
    """The answer to one usage query (see the module docstring)."""
    if not isinstance(query, dict):
        raise UsageQueryError("a usage query must be a JSON object")
    meter = query.get("meterApiName")
    if not isinstance(meter, str) or not meter:
        raise UsageQueryError("field 'meterApiName': is required")
    aggregation = str(query.get("aggregation") or "SUM").upper()
    if aggregation not in AGGREGATIONS:
        raise UsageQueryError(f"field 'aggregation': must be one of {', '.join(AGGREGATIONS)}")
    interval = str(query.get("timeGroupingInterval") or "").upper()
    if interval not in INTERVALS:
        raise UsageQueryError(f"field 'timeGroupingInterval': must be one of {', '.join(INTERVALS)}")
    time_range = query.get("timeRange")
    if not isinstance(time_range, dict) or not isinstance(time_range.get("startTimeInSeconds"), int):
        raise UsageQueryError("field 'timeRange.startTimeInSeconds': is required (integer seconds)")
    start = int(time_range["startTimeInSeconds"])
    end = time_range.get("endTimeInSeconds")
    end = int(time.time()) if end is None else int(end)
    if end <= start:
        raise UsageQueryError("field 'timeRange': endTimeInSeconds must be after startTimeInSeconds")
    group_by = query.get("groupBy") or []
    if group_by not in ([], ["customerId"]):
        raise UsageQueryError("field 'groupBy': the emulator groups by customerId only")
    customers = _customer_filter(query.get("filter"))
    take = query.get("take") or {}
    if not isinstance(take, dict):
        raise UsageQueryError("field 'take': must be an object")

    buckets = _bucket_starts(start, end, interval)
    selected = _select(index.table(), meter, start, end, customers)
    bucket = np.searchsorted(np.asarray(buckets, dtype=np.int64), selected["seconds"].to_numpy(), side="right") - 1
    groups = selected["customerId"] if group_by else pa.array([""] * selected.num_rows, pa.string())
    work = pa.table({"group": groups, "bucket": pa.array(bucket, pa.int64()), "value": selected["value"]})
    how = {"SUM": "sum", "COUNT": "count", "MIN": "min", "MAX": "max"}[aggregation]
    cells = work.group_by(["group", "bucket"]).aggregate([("value", how)]).to_pydict()
    totals = work.group_by("group").aggregate([("value", how)]).to_pydict()

    by_group: dict[str, dict[int, float]] = {}
    for group, position, value in zip(cells["group"], cells["bucket"], cells[f"value_{how}"]):
        by_group.setdefault(group, {})[position] = float(value)
    meters = []
    for group, total in zip(totals["group"], totals[f"value_{how}"]):
        present = by_group.get(group, {})
        if sparse:
            values = [{"value": present[p], "secondsSinceEpochUtc": buckets[p]} for p in sorted(present)]
        else:
            values = [{"value": present.get(p, 0.0), "secondsSinceEpochUtc": b} for p, b in enumerate(buckets)]
        meters.append({
            "group": {"groupInfo": {"customerId": group}} if group_by else None,
            "groupValue": float(total),
            "values": values,
        })
    ascending = bool(take.get("isAscending", False))
    meters.sort(key=lambda m: (m["groupValue"] if ascending else -m["groupValue"],
                               (m["group"] or {}).get("groupInfo", {}).get("customerId", "")))
    limit = take.get("limit")
    if limit is not None:
        if not isinstance(limit, int) or limit < 0:
            raise UsageQueryError("field 'take.limit': must be a non-negative integer")
        meters = meters[:limit]
    metadata = {
        "meterApiName": meter,
        "aggregation": aggregation,
        "timeGroupingInterval": interval,
        "timeRange": {"startTimeInSeconds": start, "endTimeInSeconds": end},
        "groupBy": list(group_by),
        "filter": query.get("filter"),
        "take": take or None,
    }
    return {"metadata": metadata, "secondsSinceEpochIntervals": buckets, "clientMeters": meters}


def answer_events(index: UsageIndex, store: EmulatorStore, params: dict[str, list[str]]) -> dict[str, Any]:
    """One page of raw records (``GET /usage/events``)."""
    meter = _param(params, "meterApiName")
    if not meter:
        raise UsageQueryError("query parameter 'meterApiName' is required")
    customer = _param(params, "customerId")
    start = _int_param(params, "startTimeInSeconds", 0)
    end = _int_param(params, "endTimeInSeconds", int(time.time()) + 1)
    page_size = _int_param(params, "pageSize", DEFAULT_PAGE_SIZE)
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise UsageQueryError(f"query parameter 'pageSize': must be between 1 and {MAX_PAGE_SIZE}")
    offset = _decode_token(_param(params, "nextPageToken"))
    selected = _select(index.table(), meter, start, end, [customer] if customer else None)
    selected = selected.sort_by([("millis", "ascending"), ("uniqueId", "ascending"), ("position", "ascending")])
    page = selected.slice(offset, page_size)
    rows = []
    for position in page["position"].to_pylist():
        record = store.stored_record(int(position))
        rows.append([record.get(column) for column in EVENT_COLUMNS])
    following = offset + page.num_rows
    token = _encode_token(following) if following < selected.num_rows else None
    return {
        "query": {"meterApiName": meter, "customerId": customer, "startTimeInSeconds": start,
                  "endTimeInSeconds": end, "pageSize": page_size},
        "columns": EVENT_COLUMNS,
        "rows": rows,
        "nextPageToken": token,
    }


def _customer_filter(raw: Any) -> list[str] | None:
    if raw is None or raw == {}:
        return None
    if not isinstance(raw, dict):
        raise UsageQueryError("field 'filter': must be an object of lists")
    unknown = sorted(set(raw) - {"customerId"})
    if unknown:
        raise UsageQueryError(f"field 'filter': the emulator filters by customerId only, not {', '.join(unknown)}")
    values = raw["customerId"]
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise UsageQueryError("field 'filter.customerId': must be a list of strings")
    return values


def _bucket_starts(start: int, end: int, interval: str) -> list[int]:
    """UTC-aligned bucket starts covering ``[start, end)`` (the first one at or before ``start``)."""
    if interval in ("HOUR", "DAY", "WEEK"):
        if interval == "WEEK":  # weeks start on Monday; 1970-01-01 was a Thursday
            step, anchor = 7 * 86_400, -3 * 86_400
        else:
            step, anchor = (3_600 if interval == "HOUR" else 86_400), 0
        first = start - (start - anchor) % step
        return list(range(first, end, step))
    moment = dt.datetime.fromtimestamp(start, dt.timezone.utc).replace(day=1, hour=0, minute=0, second=0)
    starts = []
    while int(moment.timestamp()) < end:
        starts.append(int(moment.timestamp()))
        moment = (moment.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return starts


def _param(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _int_param(params: dict[str, list[str]], name: str, default: int) -> int:
    text = _param(params, name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise UsageQueryError(f"query parameter {name!r}: must be an integer") from None


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"offset": offset})).decode("ascii")


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = orjson.loads(base64.urlsafe_b64decode(token.encode("ascii")))["offset"]
    except Exception:  # noqa: BLE001 - any malformed token is the client's error
        raise UsageQueryError("query parameter 'nextPageToken': not a token this server issued") from None
    if not isinstance(offset, int) or offset < 0:
        raise UsageQueryError("query parameter 'nextPageToken': not a token this server issued")
    return offset
