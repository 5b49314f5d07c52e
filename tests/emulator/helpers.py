"""Builders shared by the emulator tests."""

from __future__ import annotations

import gzip
from typing import Any

import orjson
import requests


def meter_record(index: int = 0, **overrides: Any) -> dict[str, Any]:
    """A valid meter record; ``overrides`` replace fields (``None`` removes one)."""
    record: dict[str, Any] = {
        "uniqueId": f"m-{index}",
        "customerId": "some_user_id",
        "meterApiName": "ApiCalls",
        "meterValue": 2.0,
        "meterTimeInMillis": 1619445706909 + index,
        "dimensions": {"region": "us-west-2", "plan": "pro"},
    }
    for field, value in overrides.items():
        if value is None:
            record.pop(field, None)
        else:
            record[field] = value
    return record


def post_json(
    session: requests.Session,
    url: str,
    body: Any,
    *,
    gzipped: bool = False,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> requests.Response:
    """POST ``body`` serialized by orjson (so that it can hold anything), optionally gzip'd."""
    data = orjson.dumps(body)
    headers = {"Content-Type": "application/json", **(headers or {})}
    if gzipped:
        data = gzip.compress(data)
        headers["Content-Encoding"] = "gzip"
    return session.post(url, data=data, headers=headers, **kwargs)


def post_raw(session: requests.Session, url: str, text: str | bytes, **kwargs: Any) -> requests.Response:
    """POST a body exactly as given (for JSON orjson would refuse to write, e.g. NaN)."""
    return session.post(url, data=text, headers={"Content-Type": "application/json"}, **kwargs)
