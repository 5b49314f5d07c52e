"""What Amberflo bills: SUM and COUNT per meter × customer × hour, from batched usage queries.

One batched usage call (``POST /usage/sparse/batch`` by default, ``/usage/batch`` with
``reconciliation.sparse_usage: false``) carries the SUM and the COUNT query of many meters
(``queries_per_call`` queries, default 50 = 25 meters), each grouped by ``customerId`` with an hourly
time grouping over the whole window — never a call per customer or per hour. A meter whose answer reaches the ``take``
limit may have been cut short, which would read as missing usage: that fails loudly instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import pandas as pd

from amberflo_sync.reconciliation.window import ReconciliationWindow

log = logging.getLogger(__name__)


class UsageClient(Protocol):
    """The part of :class:`~amberflo_sync.client.AmberfloClient` this module needs."""

    def query_usage_batch(self, queries: Sequence[dict[str, Any]], *, sparse: bool = False) -> list[dict[str, Any]]: ...


class TruncatedUsageError(RuntimeError):
    """A usage answer holds as many groups as the ``take`` limit allows: it may be incomplete."""


def usage_query(meter: str, aggregation: str, window: ReconciliationWindow, max_groups: int) -> dict[str, Any]:
    """One hourly, per-customer usage query of ``meter`` over the window."""
    return {
        "meterApiName": meter,
        "aggregation": aggregation,
        "timeGroupingInterval": "HOUR",
        "timeRange": {"startTimeInSeconds": window.start_seconds, "endTimeInSeconds": window.end_seconds},
        "groupBy": ["customerId"],
        "take": {"limit": max_groups, "isAscending": False},
    }


def read_billed(
    client: UsageClient,
    meters: Sequence[str],
    window: ReconciliationWindow,
    *,
    queries_per_call: int = 50,
    max_groups: int = 100_000,
    sparse: bool = True,
) -> pd.DataFrame:
    """Billed SUM and COUNT per ``meter``, ``customer``, ``hour`` (cells with usage only).

    :param sparse: ask ``/usage/sparse/batch`` (empty buckets left out) rather than ``/usage/batch``:
        the dense answer holds every customer × every hour — 55 MB for a day of 3 meters with 24,000
        customers (anonymous ids included) against a few MB sparse, and ~300 MiB once parsed.

    :raises TruncatedUsageError: an answer may have been cut by the ``take`` limit.
    """
    queries = [usage_query(meter, aggregation, window, max_groups) for meter in meters for aggregation in ("SUM", "COUNT")]
    per_call = max(2, queries_per_call - queries_per_call % 2)  # a meter's SUM and COUNT travel together
    frames = []
    for begin in range(0, len(queries), per_call):
        part = queries[begin : begin + per_call]
        answers = client.query_usage_batch(part, sparse=sparse)
        for query, answer in zip(part, answers):
            frames.append(_cells_of(query, answer, max_groups))
    if not frames:
        return _empty_billed()
    long = pd.concat(frames, ignore_index=True)
    if long.empty:
        return _empty_billed()
    wide = long.pivot_table(index=["meter", "customer", "hour"], columns="aggregation", values="value",
                            aggfunc="sum", fill_value=0.0).reset_index()
    wide.columns.name = None
    for column in ("SUM", "COUNT"):
        if column not in wide:
            wide[column] = 0.0
    wide = wide.rename(columns={"SUM": "billed_sum", "COUNT": "billed_count"})
    wide["billed_count"] = wide["billed_count"].round().astype("int64")
    wide = wide[(wide["billed_count"] != 0) | (wide["billed_sum"] != 0)]
    return wide[["meter", "customer", "hour", "billed_sum", "billed_count"]].reset_index(drop=True)


def _cells_of(query: dict[str, Any], answer: dict[str, Any], max_groups: int) -> pd.DataFrame:
    meters = answer.get("clientMeters") or []
    if len(meters) >= max_groups:
        raise TruncatedUsageError(
            f"usage of {query['meterApiName']} ({query['aggregation']}) returned {len(meters)} customers, the take "
            "limit: raise reconciliation.max_groups or reconcile a shorter interval")
    customers, hours, values = [], [], []
    for meter in meters:
        customer = ((meter.get("group") or {}).get("groupInfo") or {}).get("customerId")
        for point in meter.get("values") or []:
            value = point.get("value") or 0.0
            if value:
                customers.append(customer)
                hours.append(int(point["secondsSinceEpochUtc"]))
                values.append(float(value))
    return pd.DataFrame({"meter": query["meterApiName"], "customer": customers, "hour": pd.Series(hours, dtype="int64"),
                         "aggregation": query["aggregation"], "value": pd.Series(values, dtype="float64")})


def _empty_billed() -> pd.DataFrame:
    return pd.DataFrame({"meter": pd.Series(dtype=object), "customer": pd.Series(dtype=object),
                         "hour": pd.Series(dtype="int64"), "billed_sum": pd.Series(dtype="float64"),
                         "billed_count": pd.Series(dtype="int64")})
