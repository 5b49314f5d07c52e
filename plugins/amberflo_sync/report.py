"""Print what (emulated) Amberflo received and what the sync recorded — the demo's last step.

``python -m amberflo_sync.report --amberflo-url http://127.0.0.1:8765 --state-url sqlite:///…``
Reads the emulator's admin endpoints (no API key needed there) and the state database.
"""

from __future__ import annotations

import argparse
import collections
from typing import Any

import requests

from amberflo_sync.ledger import Ledger
from amberflo_sync.state import StateStore


def emulator_report(base_url: str) -> dict[str, Any]:
    """Counts per meter, customers and the emulator's counters."""
    records = requests.get(f"{base_url}/__emulator/records", timeout=30).json()
    customers = requests.get(f"{base_url}/__emulator/customers", timeout=30).json()
    stats = requests.get(f"{base_url}/__emulator/stats", timeout=30).json()
    per_meter: dict[str, dict[str, float]] = collections.defaultdict(lambda: {"records": 0, "value": 0.0})
    billed_customers = set()
    for record in records:
        meter = per_meter[record["meterApiName"]]
        meter["records"] += 1
        meter["value"] += float(record["meterValue"])
        billed_customers.add(record["customerId"])
    return {
        "meters": dict(sorted(per_meter.items())),
        "billed_customers": len(billed_customers),
        "customers": customers,
        "stats": stats,
    }


def format_report(report: dict[str, Any], state: StateStore | None = None) -> str:
    lines = ["", "=== What Amberflo received ==="]
    lines.append(f"{'meter':<28}{'records':>10}{'sum of values':>18}")
    for meter, agg in report["meters"].items():
        lines.append(f"{meter:<28}{int(agg['records']):>10}{agg['value']:>18,.2f}")
    stats = report["stats"]
    lines.append(
        f"distinct records: {stats.get('distinct', 0)}  (received {stats.get('received', 0)}, "
        f"duplicates absorbed {stats.get('duplicates', 0)}, requests {stats.get('requests', 0)})"
    )
    lines.append(f"customers billed: {report['billed_customers']}  customer records held: {len(report['customers'])}")
    if state is not None:
        rejected = collections.Counter((r["stream"], r["reason"]) for r in Ledger(state).rejected_rows())
        lines.append("")
        lines.append("=== Rejected rows (state table rejected_rows) ===")
        if not rejected:
            lines.append("none")
        for (stream, reason), count in sorted(rejected.items()):
            lines.append(f"{stream:<40}{reason:<28}{count:>6}")
        lines.append("")
        lines.append("=== Last run per stream (state table sync_runs) ===")
        latest: dict[str, dict[str, Any]] = {}
        for run in Ledger(state).runs():
            latest[run["stream"]] = run
        for stream, run in sorted(latest.items()):
            lines.append(
                f"{stream:<40}{run['status']:<9} read={run['rows_read']} sent={run['rows_sent']} "
                f"duplicates={run['duplicates']} rejected={run['rejected']} skipped={run['skipped']}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--amberflo-url", required=True, help="emulator base URL")
    parser.add_argument("--state-url", help="SQLAlchemy URL of the state database")
    parser.add_argument("--state-schema", default="amberflo_sync")
    args = parser.parse_args(argv)
    state = StateStore.from_url(args.state_url, schema=args.state_schema) if args.state_url else None
    print(format_report(emulator_report(args.amberflo_url), state))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
