"""What kind of run this is, and what each kind may do — the one place for run-type rules.

===============  =====================  ===============  ===================  ================
kind             reads                  waits for        moves watermarks     retries rejected
                                        customers
===============  =====================  ===============  ===================  ================
scheduled        cursor window          yes              yes                  yes
manual           cursor window          no               yes                  yes
backfill         event-time interval    no               no                   no
any + dry_run    as its kind            no               no (sends nothing)   no
===============  =====================  ===============  ===================  ================

A run is a *backfill* when Airflow made it one (the UI's Backfill dialog, ``airflow backfill create``:
``run_type == "backfill"``) or when it is given both ``start`` and ``end`` Params. A dry run never
waits, sends nothing and writes no watermark, whatever its kind.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SCHEDULED, MANUAL, BACKFILL = "scheduled", "manual", "backfill"


@dataclass(frozen=True)
class RunRules:
    """The rules of one run.

    :ivar kind: ``scheduled``, ``manual`` or ``backfill``.
    :ivar dry_run: send nothing, move nothing.
    :ivar interval: the event-time interval ``(start, end]`` of a backfill, else None.
    """

    kind: str
    dry_run: bool = False
    interval: tuple[dt.datetime, dt.datetime] | None = None

    @property
    def label(self) -> str:
        """The kind as recorded in the ledger's plans (``manual+dry_run`` …)."""
        return f"{self.kind}+dry_run" if self.dry_run else self.kind

    @property
    def waits_for_customers(self) -> bool:
        return self.kind == SCHEDULED and not self.dry_run

    @property
    def moves_watermarks(self) -> bool:
        return self.kind != BACKFILL and not self.dry_run

    @property
    def retries_rejected(self) -> bool:
        return self.kind != BACKFILL and not self.dry_run


def classify(run_type: Any, params: Mapping[str, Any] | None = None,
             data_interval: tuple[Any, Any] | None = None) -> RunRules:
    """The rules of a run from its ``dag_run.run_type``, Params and data interval.

    :raises ValueError: a backfill without a usable interval (only one of ``start``/``end``, or an
        Airflow backfill run without a data interval).
    """
    params = dict(params or {})
    dry_run = bool(params.get("dry_run"))
    kind_text = str(getattr(run_type, "value", run_type) or "").lower()
    if params.get("start") or params.get("end"):
        if not (params.get("start") and params.get("end")):
            raise ValueError("a backfill needs both the start and the end Param (ISO-8601, UTC)")
        return RunRules(BACKFILL, dry_run, (to_utc(params["start"]), to_utc(params["end"])))
    if kind_text.endswith("backfill"):
        start, end = data_interval or (None, None)
        if start is None or end is None:
            raise ValueError("a backfill run needs a data interval (use a CronDataIntervalTimetable)")
        return RunRules(BACKFILL, dry_run, (to_utc(start), to_utc(end)))
    if kind_text.endswith("scheduled"):
        return RunRules(SCHEDULED, dry_run)
    return RunRules(MANUAL, dry_run)


def from_context(context: Mapping[str, Any]) -> RunRules:
    """:func:`classify` for an Airflow task context (manual runs may have no data interval)."""
    dag_run = context.get("dag_run")
    return classify(getattr(dag_run, "run_type", None), context.get("params"),
                    (context.get("data_interval_start"), context.get("data_interval_end")))


def to_utc(value: Any) -> dt.datetime:
    """An aware UTC datetime from an ISO-8601 text (``Z`` allowed) or a datetime (naive = UTC)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)
