"""The reconciliation as people read it: a line per meter, a Markdown report, an HTML chart, a JSON file.

* **Summary lines** (task log): ``reconciliation <meter>: cells=… match=… missing=… excess=… pending=…
  expected_count=… billed_count=… expected_sum=… billed_sum=…``.
* **Markdown** (task log): per meter, expected vs billed per day and the largest differences; the
  drill-down of drifted cells; the repair; rows the mapping rejected (not billed, by design).
* **HTML** (``<reports_dir>/reconciliation_<run>.html``): the same, with a bar chart per meter of
  expected vs billed per day (inline SVG, no plotting library needed) — the page to send a finance team.
* **JSON** (``<reports_dir>/reconciliation_<run>.json``): cells that drifted, the drill-down sets and
  the repair, for scripts.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from amberflo_sync.reconciliation.compare import DRIFT, STATUSES, counts_by_status
from amberflo_sync.reconciliation.table import iso_hour

if TYPE_CHECKING:
    from amberflo_sync.reconciliation.run import ReconciliationResult

LARGEST = 10
IDS_SHOWN = 20


def summary_lines(cells: pd.DataFrame) -> list[str]:
    """One line per meter, then one for all meters."""
    lines = []
    for meter, part in cells.groupby("meter", sort=True):
        lines.append(f"reconciliation {meter}: {_line(part)}")
    lines.append(f"reconciliation all meters: {_line(cells)}")
    return lines


def _line(part: pd.DataFrame) -> str:
    counts = counts_by_status(part)
    return (f"cells={len(part)} " + " ".join(f"{s}={counts[s]}" for s in STATUSES)
            + f" expected_count={int(part['expected_count'].sum())} billed_count={int(part['billed_count'].sum())}"
            + f" expected_sum={_num(part['expected_sum'].sum())} billed_sum={_num(part['billed_sum'].sum())}")


def _num(value: float) -> str:
    return f"{value:.6g}" if abs(value) < 1e15 else f"{value:.6e}"


def daily(cells: pd.DataFrame) -> pd.DataFrame:
    """Expected vs billed per meter and UTC day."""
    if cells.empty:
        return pd.DataFrame(columns=["meter", "day", "expected_count", "billed_count", "expected_sum", "billed_sum",
                                     "drifted_cells", "pending_cells"])
    frame = cells.assign(day=pd.to_datetime(cells["hour"], unit="s", utc=True).dt.strftime("%Y-%m-%d"),
                         drifted=cells["status"].isin(DRIFT), pending=cells["status"] == "pending")
    return frame.groupby(["meter", "day"], sort=True).agg(
        expected_count=("expected_count", "sum"), billed_count=("billed_count", "sum"),
        expected_sum=("expected_sum", "sum"), billed_sum=("billed_sum", "sum"),
        drifted_cells=("drifted", "sum"), pending_cells=("pending", "sum")).reset_index()


def largest_differences(cells: pd.DataFrame, limit: int = LARGEST) -> pd.DataFrame:
    drifted = cells[cells["status"].isin(DRIFT)]
    if drifted.empty:
        return drifted
    order = (drifted["billed_sum"] - drifted["expected_sum"]).abs().sort_values(ascending=False, kind="stable")
    return drifted.loc[order.index[:limit]]


def markdown(result: ReconciliationResult) -> str:
    """The whole report as Markdown."""
    window = result.window
    cells = result.cells
    out = [f"# Amberflo reconciliation — run `{result.run_id}`", "",
           f"Interval {window.describe()} (UTC hours; settled when ended before {window.settled_before.isoformat()}).",
           f"Amberflo API calls: {result.api_calls}; seconds: {result.seconds:.2f}.", ""]
    out += [f"- {line}" for line in summary_lines(cells)] if len(cells) else ["- no usage on either side"]
    for meter, days in daily(cells).groupby("meter", sort=True):
        out += ["", f"## {meter}", "", "| day (UTC) | expected count | billed count | expected sum | billed sum | drifted cells | pending cells |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for row in days.itertuples(index=False):
            out.append(f"| {row.day} | {row.expected_count} | {row.billed_count} | {_num(row.expected_sum)} | "
                       f"{_num(row.billed_sum)} | {row.drifted_cells} | {row.pending_cells} |")
        top = largest_differences(cells[cells["meter"] == meter])
        if len(top):
            out += ["", "Largest differences:", "", "| hour (UTC) | customer | status | expected count/sum | billed count/sum |",
                    "|---|---|---|---:|---:|"]
            for row in top.itertuples(index=False):
                out.append(f"| {iso_hour(row.hour)} | `{row.customer}` | **{row.status}** | {row.expected_count} / "
                           f"{_num(row.expected_sum)} | {row.billed_count} / {_num(row.billed_sum)} |")
    if result.drills:
        out += ["", "## Drill-down (records behind drifted cells)", ""]
        for drill in result.drills:
            out.append(f"- `{drill.meter}` × `{drill.customer}` × {iso_hour(drill.hour)} — **{drill.status}**: "
                       f"missing {_ids(drill.missing_ids)}; unexpected {_ids(drill.unexpected_ids)}; "
                       f"different bytes {_ids(drill.different_bytes_ids)}")
        if result.drills_left_out:
            out.append(f"- … and {result.drills_left_out} more drifted cells (raise reconciliation.drilldown_max_cells)")
    if result.repair is not None:
        plan = result.repair
        verb = "would re-send" if result.dry_run else "re-sent"
        out += ["", "## Repair", "",
                f"{verb} {len(plan.resend)} records byte-identically; "
                f"{'would cancel' if result.dry_run else 'cancelled'} {len(plan.cancel)} records the project sent; "
                f"refused to cancel {len(plan.foreign)} foreign records (not the project's: fix them in Amberflo by hand)."]
        if plan.foreign:
            out.append("Foreign records: " + _ids(sorted({r["uniqueId"] for r in plan.foreign})))
    if result.rejected:
        out += ["", "## Rows not billed by design (rejected by the mapping)", "", "| stream | reason | rows | ids (sample) |",
                "|---|---|---:|---|"]
        for (stream, reason), count in sorted(result.rejected.items()):
            out.append(f"| {stream} | {reason} | {count} | {', '.join(result.rejected_ids.get((stream, reason), []))} |")
    return "\n".join(out) + "\n"


def _ids(ids: list[str]) -> str:
    if not ids:
        return "none"
    shown = ", ".join(f"`{i}`" for i in ids[:IDS_SHOWN])
    return shown + (f" … (+{len(ids) - IDS_SHOWN})" if len(ids) > IDS_SHOWN else "")


def write_files(result: ReconciliationResult, reports_dir: str | Path) -> dict[str, str]:
    """Write the HTML report and the JSON drill-down; returns their paths."""
    folder = Path(reports_dir)
    folder.mkdir(parents=True, exist_ok=True)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in result.run_id)
    html_path, json_path = folder / f"reconciliation_{safe}.html", folder / f"reconciliation_{safe}.json"
    html_path.write_text(render_html(result), encoding="utf-8")
    json_path.write_text(json.dumps(result.to_dict(), indent=1, default=str), encoding="utf-8")
    return {"html": str(html_path), "json": str(json_path)}


def render_html(result: ReconciliationResult) -> str:
    """A self-contained page: a chart per meter (expected vs billed per day) above the Markdown text."""
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Amberflo reconciliation</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
             ".legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px}</style></head><body>",
             f"<h1>Amberflo reconciliation — {html.escape(result.run_id)}</h1>",
             f"<p>Interval {html.escape(result.window.describe())}, generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.</p>",
             "<p class='legend'><span style='background:#4c78a8'></span>expected (warehouse)"
             "<span style='background:#f58518'></span>billed (Amberflo)</p>"]
    for meter, days in daily(result.cells).groupby("meter", sort=True):
        parts.append(f"<h2>{html.escape(str(meter))}</h2>{_svg(days)}")
    parts.append("<pre>" + html.escape(markdown(result)) + "</pre></body></html>")
    return "".join(parts)


def _svg(days: pd.DataFrame) -> str:
    width, height, pad = 900, 220, 30
    top = max(float(days["expected_sum"].max()), float(days["billed_sum"].max()), 1.0)
    slot = (width - 2 * pad) / max(len(days), 1)
    bar = max(slot / 2 - 4, 1)
    shapes = []
    for i, row in enumerate(days.itertuples(index=False)):
        x = pad + i * slot
        for j, (value, colour) in enumerate(((row.expected_sum, "#4c78a8"), (row.billed_sum, "#f58518"))):
            h = (height - 2 * pad) * float(value) / top
            shapes.append(f"<rect x='{x + j * (bar + 2):.1f}' y='{height - pad - h:.1f}' width='{bar:.1f}' "
                          f"height='{h:.1f}' fill='{colour}'><title>{html.escape(row.day)}: {value:g}</title></rect>")
        marker = " ⚠" if row.drifted_cells else ""
        shapes.append(f"<text x='{x:.1f}' y='{height - 8}' font-size='10'>{html.escape(row.day[5:])}{marker}</text>")
    return f"<svg width='{width}' height='{height}' role='img'>{''.join(shapes)}</svg>"


def rejected_summary(rejected: dict[tuple[str, str], int]) -> dict[str, int]:
    """Rejected rows by reason (all streams), for the run summary."""
    out: dict[str, int] = {}
    for (_, reason), count in rejected.items():
        out[reason] = out.get(reason, 0) + count
    return dict(sorted(out.items()))


def as_jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
