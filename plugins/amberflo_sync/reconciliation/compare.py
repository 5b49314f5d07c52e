"""Cell by cell: expected vs billed, and the status of each meter × customer × hour.

* ``match`` — billed COUNT equals expected COUNT and billed SUM equals expected SUM (to float
  rounding, or within the configured relative ``tolerance``);
* ``missing`` — Amberflo bills less than the warehouse holds (fewer records, or the same number
  with a smaller sum);
* ``excess`` — Amberflo bills more (more records, or a larger sum): a double bill, a record for the
  wrong customer, a record the warehouse no longer has;
* ``pending`` — the hour is younger than the settle delay: Amberflo may not show it all yet, so
  whatever the numbers say it is not drift.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MATCH, MISSING, EXCESS, PENDING = "match", "missing", "excess", "pending"
STATUSES = (MATCH, MISSING, EXCESS, PENDING)
DRIFT = (MISSING, EXCESS)
#: Relative difference of two sums still taken as equal: float sums in another order differ slightly.
FLOAT_RELATIVE = 1e-9


def compare_cells(expected: pd.DataFrame, billed: pd.DataFrame, *, settled_seconds: int,
                  tolerance: float = 0.0) -> pd.DataFrame:
    """Outer-join the two sides on ``meter``, ``customer``, ``hour`` and give every cell its status.

    :param expected: ``meter``, ``customer``, ``hour``, ``expected_sum``, ``expected_count``.
    :param billed: ``meter``, ``customer``, ``hour``, ``billed_sum``, ``billed_count``.
    :param settled_seconds: hours ending after this epoch second are ``pending``.
    :param tolerance: relative difference of SUM and COUNT accepted as a match (0 = exact).
    """
    cells = expected.merge(billed, on=["meter", "customer", "hour"], how="outer")
    for column, dtype in (("expected_sum", "float64"), ("billed_sum", "float64"),
                          ("expected_count", "int64"), ("billed_count", "int64")):
        cells[column] = cells[column].fillna(0).astype(dtype)
    cells["hour"] = cells["hour"].astype("int64")
    d_sum = cells["billed_sum"].to_numpy() - cells["expected_sum"].to_numpy()
    d_count = cells["billed_count"].to_numpy() - cells["expected_count"].to_numpy()
    scale = np.maximum(np.abs(cells["expected_sum"].to_numpy()), np.abs(cells["billed_sum"].to_numpy()))
    sum_ok = np.abs(d_sum) <= np.maximum(FLOAT_RELATIVE * np.maximum(scale, 1.0), tolerance * scale)
    count_ok = np.abs(d_count) <= tolerance * cells["expected_count"].to_numpy()
    less = (d_count < 0) | ((d_count == 0) & (d_sum < 0))
    status = np.where(sum_ok & count_ok, MATCH, np.where(less, MISSING, EXCESS)).astype(object)
    status[(cells["hour"].to_numpy() + 3600) > settled_seconds] = PENDING
    cells["status"] = status
    return cells.sort_values(["meter", "customer", "hour"], kind="stable").reset_index(drop=True)


def counts_by_status(cells: pd.DataFrame) -> dict[str, int]:
    """``{status: cells}`` with every status present (zeros included)."""
    counts = cells["status"].value_counts().to_dict() if len(cells) else {}
    return {status: int(counts.get(status, 0)) for status in STATUSES}
