"""Reconciliation: prove that what Amberflo bills equals what the warehouse holds, cell by cell.

``window`` (which hours, settled or pending) → ``expected`` (the sync's own records from the warehouse)
and ``billed`` (Amberflo's usage API, batched) → ``compare`` (status per meter × customer × hour) →
``drilldown`` (the exact records behind drift; the safe repair) → ``table`` and ``report``.
``run.reconcile`` ties them together; ``amberflo_sync.reconcile_tasks`` is the Airflow glue.
"""

from amberflo_sync.reconciliation.compare import EXCESS, MATCH, MISSING, PENDING, STATUSES
from amberflo_sync.reconciliation.run import ReconciliationDrift, ReconciliationResult, fail_on_drift, reconcile
from amberflo_sync.reconciliation.window import ReconciliationRefused, ReconciliationWindow, resolve_window

__all__ = [
    "EXCESS",
    "MATCH",
    "MISSING",
    "PENDING",
    "STATUSES",
    "ReconciliationDrift",
    "ReconciliationRefused",
    "ReconciliationResult",
    "ReconciliationWindow",
    "fail_on_drift",
    "reconcile",
    "resolve_window",
]
