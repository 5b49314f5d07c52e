"""Request body decoding: gzip and JSON, with messages a client developer can act on.

Kept apart from the HTTP handler because it is the other half of the hot path (with validation) and
because its error cases — a truncated gzip stream, a NaN that orjson refuses — deserve their own tests.
"""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import orjson

#: Largest decompressed body accepted; far above any sane batch, low enough to stop a gzip bomb.
MAX_BODY_BYTES = 256 * 1024 * 1024


class PayloadError(ValueError):
    """The body cannot be decoded; ``status`` is the HTTP status to answer with (400 or 413)."""

    def __init__(self, message: str, status: int = 400) -> None:
        self.status = status
        super().__init__(message)


def decompress(body: bytes, content_encoding: str | None) -> bytes:
    """Undo ``Content-Encoding`` (only ``gzip`` and ``identity`` exist here).

    Fast path: one ``zlib.decompress`` with the output size the gzip trailer announces, then a check
    that it matches the trailer — a mismatch means several gzip members or trailing bytes, which the
    careful (slower) :func:`gzip.decompress` path sorts out.

    :raises PayloadError: for an unknown encoding, a corrupt stream or an oversized body.
    """
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise PayloadError(
            f"unsupported Content-Encoding {encoding!r}: send gzip or no encoding", status=415
        )
    if len(body) < 18:
        raise PayloadError("body is not valid gzip: too short")
    announced = int.from_bytes(body[-4:], "little")
    if announced <= MAX_BODY_BYTES:
        try:
            data = zlib.decompress(body, 31, announced + 1)
        except zlib.error:
            data = None
        if data is not None and len(data) & 0xFFFFFFFF == announced:
            return data
    return _careful_gunzip(body)


def _careful_gunzip(body: bytes) -> bytes:
    """Bounded multi-member gunzip for bodies the fast path could not vouch for."""
    try:
        data = gzip.decompress(body)  # handles several members; rejects trailing garbage
    except (OSError, EOFError, zlib.error) as error:
        raise PayloadError(f"body is not valid gzip: {error}") from None
    if len(data) > MAX_BODY_BYTES:
        raise PayloadError("decompressed body is too large", status=413)
    return data


def parse_json(data: bytes) -> Any:
    """Parse JSON with orjson; fall back to the standard library for what orjson refuses.

    The fallback accepts ``NaN``/``Infinity`` and huge integers, so that validation can name the
    record and field (``meterValue`` is NaN) instead of answering a vague "invalid JSON".

    :raises PayloadError: when the body is not JSON at all.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise PayloadError(f"body is not valid JSON: {error}") from None


def meter_records_of(body: Any) -> list[Any]:
    """The list of records in an ingestion body: one object, or an array of objects.

    :raises PayloadError: for any other JSON shape.
    """
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        return [body]
    raise PayloadError("body must be a JSON object or an array of objects")
