"""Amberflo HTTP client: chunked, gzip'd ingestion and customer calls on one pooled session.

Building a request, sending it (with the shared :class:`~amberflo_sync.retry.RetryPolicy`) and
checking the response are separate steps, as in Airflow's ``HttpHook``. The API key is sent only in
the ``X-API-KEY`` header and is scrubbed from every message this module produces.
"""

from __future__ import annotations

import gzip
import logging
import random
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from amberflo_sync.retry import RetryPolicy

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500


class AmberfloError(Exception):
    """Base class of every error this client raises (messages never contain the API key)."""


class AmberfloRejectedError(AmberfloError):
    """Amberflo refused the request with a status that retrying cannot fix (4xx other than 429).

    :ivar status: HTTP status.
    :ivar detail: Amberflo's own message (response body, trimmed).
    """

    def __init__(self, message: str, *, status: int, detail: str) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class AmberfloAuthError(AmberfloRejectedError):
    """401/403: the API key is wrong or lacks permission. Fails fast, never retried."""


class AmberfloUnavailableError(AmberfloError):
    """Retries were exhausted (429/5xx/connection errors/timeouts for longer than the budget)."""


@dataclass(frozen=True)
class ClientSettings:
    """Everything needed to talk to Amberflo, parsed from the ``amberflo_default`` connection.

    :param base_url: API base URL, e.g. ``https://app.amberflo.io``.
    :param api_key: the ``X-API-KEY`` value (never logged).
    :param ingest_url: ingestion endpoint; default ``<base_url>/ingest``.
    :param batch_size: records per ingestion request.
    :param connect_timeout: seconds to establish a connection.
    :param read_timeout: seconds to wait for a response.
    :param concurrency: parallel requests allowed (customers API; pool size).
    :param gzip_level: compression level of ingestion bodies.
    """

    base_url: str
    api_key: str = field(repr=False)
    ingest_url: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    concurrency: int = 8
    gzip_level: int = 5

    @property
    def resolved_ingest_url(self) -> str:
        return self.ingest_url or f"{self.base_url.rstrip('/')}/ingest"


@dataclass
class ClientStats:
    """Counters of one client's life: requests made, retries, records accepted."""

    requests: int = 0
    retries: int = 0
    records_sent: int = 0
    batches_sent: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)


_INGESTED_RE = re.compile(r"^\s*(\d+) records? were ingested")


class AmberfloClient:
    """Talks to Amberflo over one pooled :class:`requests.Session`.

    :param settings: connection settings.
    :param retry: retry policy (injected so tests can shorten it).
    :param session: optional session to reuse.
    """

    def __init__(
        self, settings: ClientSettings, *, retry: RetryPolicy | None = None, session: requests.Session | None = None
    ) -> None:
        if not settings.api_key:
            raise AmberfloError("the Amberflo connection has no API key (set its password)")
        self.settings = settings
        self.retry = retry or RetryPolicy()
        self.stats = ClientStats()
        self._rng = random.Random()
        self.session = session or requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(4, settings.concurrency), max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update({"X-API-KEY": settings.api_key, "Accept": "application/json"})

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> AmberfloClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- ingestion ------------------------------------------------------------------------------
    @staticmethod
    def build_ingest_body(records: Sequence[str], gzip_level: int = 5) -> bytes:
        """A gzip'd JSON array of already-rendered record objects."""
        payload = ("[" + ",".join(records) + "]").encode("utf-8")
        return gzip.compress(payload, compresslevel=gzip_level, mtime=0)

    def ingest_batch(self, records: Sequence[str]) -> int:
        """Send one batch of JSON records; returns how many Amberflo accepted.

        :raises AmberfloRejectedError: Amberflo refused the batch (400 names the record and field).
        :raises AmberfloUnavailableError: retries exhausted.
        """
        if not records:
            return 0
        body = self.build_ingest_body(records, self.settings.gzip_level)
        response = self.request(
            "POST",
            self.settings.resolved_ingest_url,
            data=body,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        match = _INGESTED_RE.match(response.text or "")
        if match and int(match.group(1)) != len(records):
            log.warning("Amberflo reported %s records ingested for a batch of %d", match.group(1), len(records))
        self.stats.add(records_sent=len(records), batches_sent=1)
        return len(records)

    def ingest_records(self, records: Sequence[str], batch_size: int | None = None) -> int:
        """Send records in batches of ``batch_size`` (default from settings), in order."""
        size = batch_size or self.settings.batch_size
        sent = 0
        for start in range(0, len(records), size):
            sent += self.ingest_batch(records[start : start + size])
        return sent

    # -- customers ------------------------------------------------------------------------------
    def get_customer(self, customer_id: str) -> dict[str, Any] | None:
        """The customer as Amberflo holds it, or None when it does not exist (``{}`` or 404)."""
        response = self.request(
            "GET", self._url("/customers/"), params={"customerId": customer_id}, ok_statuses=(200, 404)
        )
        if response.status_code == 404:
            return None
        data = response.json() if response.content else {}
        return data or None

    def create_customer(self, customer: dict[str, Any], *, create_in_stripe: bool = False) -> dict[str, Any]:
        params = {"autoCreateCustomerInStripe": "true"} if create_in_stripe else None
        return self.request("POST", self._url("/customers"), json=customer, params=params).json()

    def replace_customer(self, customer: dict[str, Any]) -> dict[str, Any]:
        return self.request("PUT", self._url("/customers"), json=customer).json()

    def list_customers(self) -> list[dict[str, Any]]:
        return list(self.request("GET", self._url("/customers")).json())

    # -- one request, retried -------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        *,
        ok_statuses: Iterable[int] = (200, 201, 202, 204),
        **kwargs: Any,
    ) -> requests.Response:
        """Send one request under the retry policy and check its answer.

        :raises AmberfloAuthError: 401/403.
        :raises AmberfloRejectedError: another 4xx (Amberflo's message included).
        :raises AmberfloUnavailableError: 429/5xx/network failures beyond the retry budget.
        """
        ok = set(ok_statuses)
        timeout = (self.settings.connect_timeout, self.settings.read_timeout)
        attempt = 0
        first_failure: float | None = None
        while True:
            attempt += 1
            self.stats.add(requests=1)
            retry_after: str | None = None
            try:
                response = self.session.request(method, url, timeout=timeout, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = f"{type(exc).__name__}: {self._scrub(str(exc))[:300]}"
            else:
                if response.status_code in ok:
                    return response
                self.check_response(method, url, response)  # raises for non-retryable statuses
                problem = f"HTTP {response.status_code}: {self._detail(response)}"
                retry_after = response.headers.get("Retry-After")
            first_failure = first_failure if first_failure is not None else self.retry.clock()
            delay = self.retry.backoff(attempt, retry_after, self._rng)
            if not self.retry.may_retry(attempt, first_failure, delay):
                elapsed = self.retry.clock() - first_failure
                raise AmberfloUnavailableError(
                    f"{method} {url} failed after {attempt} attempts over {elapsed:.1f}s; last error: {problem}"
                )
            self.stats.add(retries=1)
            log.warning("%s %s: %s; retry %d in %.2fs", method, url, problem, attempt, delay)
            self.retry.sleep(delay)

    def check_response(self, method: str, url: str, response: requests.Response) -> None:
        """Raise for answers that retrying cannot fix; return for retryable ones."""
        status = response.status_code
        if self.retry.is_retryable_status(status):
            return
        detail = self._detail(response)
        if status in (401, 403):
            raise AmberfloAuthError(
                f"{method} {url}: Amberflo refused the API key (HTTP {status}): {detail}. "
                "Check the password of the Amberflo connection.",
                status=status,
                detail=detail,
            )
        raise AmberfloRejectedError(f"{method} {url}: HTTP {status}: {detail}", status=status, detail=detail)

    # -- helpers --------------------------------------------------------------------------------
    def _url(self, path: str) -> str:
        return self.settings.base_url.rstrip("/") + path

    def _detail(self, response: requests.Response) -> str:
        return self._scrub((response.text or "").strip())[:500]

    def _scrub(self, text: str) -> str:
        key = self.settings.api_key
        return text.replace(key, "***") if key else text
