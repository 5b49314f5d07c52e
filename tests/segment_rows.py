"""Factories for Segment-shaped rows used across tests."""

from __future__ import annotations

import pandas as pd

BASE_TIME = pd.Timestamp("2026-11-20T10:00:00Z")


def event_rows(n: int, *, prefix: str = "m", start: pd.Timestamp = BASE_TIME, loaded: pd.Timestamp | None = None,
               event_text: str | None = None, **columns) -> pd.DataFrame:
    """``n`` rows with Segment's standard columns; ``uuid_ts`` one second apart from ``loaded``."""
    loaded = loaded if loaded is not None else start + pd.Timedelta(minutes=30)
    frame = pd.DataFrame(
        {
            "id": [f"{prefix}-{i}" for i in range(n)],
            "anonymous_id": [f"anon-{i}" for i in range(n)],
            "user_id": [f"user_{i % 3}" for i in range(n)],
            "timestamp": [start + pd.Timedelta(seconds=i) for i in range(n)],
            "received_at": [start + pd.Timedelta(seconds=i, milliseconds=500) for i in range(n)],
            "sent_at": [start + pd.Timedelta(seconds=i) for i in range(n)],
            "original_timestamp": [start + pd.Timedelta(seconds=i) for i in range(n)],
            "uuid_ts": [loaded + pd.Timedelta(seconds=i) for i in range(n)],
            "context_library_name": ["analytics.js"] * n,
        }
    )
    if event_text is not None:
        frame["event"] = event_text.lower()
        frame["event_text"] = event_text
    for name, values in columns.items():
        frame[name] = values if isinstance(values, list) else [values] * n
    return frame
