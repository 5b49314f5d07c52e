"""The one place that removes secrets from text, and checks an API key before it is used.

Every message this project produces from an exception (the client's errors, the ``error`` column of
``sync_runs``, task logs) goes through :func:`redact`, so a key that leaks into an exception text —
``requests`` puts an invalid header value into its ``InvalidHeader`` message, a server may echo it, a
URL may carry it percent-encoded — never reaches a log line, a state table or a file.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

#: What replaces a secret.
MASK = "***"

#: Secrets this process has read (the Amberflo key as the hook and the client see it), so that code
#: far from the connection — the ``sync_runs.error`` writer — can redact without being handed them.
_REGISTERED: set[str] = set()
_LOCK = threading.Lock()


def register_secret(secret: str | None) -> None:
    """Remember ``secret`` (and so its stripped form) for every later :func:`redact` call."""
    if secret and secret.strip():
        with _LOCK:
            _REGISTERED.add(secret)


class InvalidApiKeyError(ValueError):
    """The API key cannot be sent as an HTTP header. The message never contains the key."""


def secret_forms(secret: str) -> list[str]:
    """Every spelling of ``secret`` that may show up in text: as given, stripped, ``repr``-escaped
    (``\\n`` written as two characters) and URL-encoded (``quote``/``quote_plus``), longest first so
    that a longer form is replaced before a shorter one inside it."""
    forms: set[str] = set()
    for base in {secret, secret.strip()}:
        if not base:
            continue
        forms.update({base, quote(base, safe=""), quote_plus(base, safe=""), repr(base)[1:-1]})
        forms.add(base.encode("unicode_escape").decode("ascii", "replace"))
    return sorted((f for f in forms if f), key=len, reverse=True)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every form (see :func:`secret_forms`) of every secret in ``secrets`` and of every
    secret registered with :func:`register_secret` replaced by ``***``. Use it on every exception
    text that is logged or stored (``redact(f"{type(exc).__name__}: {exc}")``)."""
    with _LOCK:
        known = list(_REGISTERED)
    forms = {form for secret in [*secrets, *known] if secret for form in secret_forms(secret)}
    out = str(text)
    for form in sorted(forms, key=len, reverse=True):  # longer forms first: one may contain another
        if form in out:
            out = out.replace(form, MASK)
    return out


def clean_api_key(raw: str | None) -> str:
    """The API key with surrounding whitespace stripped (a key pasted into a form or read from a
    secrets file often ends in a newline).

    :raises InvalidApiKeyError: the key is empty, or holds whitespace or non-printable characters
        inside it; the message says what is wrong and where, never the key.
    """
    key = (raw or "").strip()
    if not key:
        return ""
    for position, ch in enumerate(key, start=1):
        if ch.isspace() or not ch.isprintable() or not ch.isascii():
            kind = "whitespace" if ch.isspace() else "a non-printable or non-ASCII character"
            raise InvalidApiKeyError(
                f"the Amberflo API key (password of the Amberflo connection) contains {kind} at character "
                f"{position} of {len(key)}; paste the key again exactly as Amberflo shows it"
            )
    return key


def error_text(exc: BaseException, limit: int = 2000) -> str:
    """An exception as it is stored in the state tables and logged: type, message, secrets removed
    (redacted before it is cut, so a cut never leaves part of a key behind)."""
    return redact(f"{type(exc).__name__}: {exc}")[:limit]
