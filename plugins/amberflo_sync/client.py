"""Amberflo HTTP client: chunked, gzip'd ingestion and customer calls on one pooled session.

Building a request, sending it (with the shared :class:`~amberflo_sync.retry.RetryPolicy`) and
checking the response are separate steps, as in Airflow's ``HttpHook``. The API key is sent only in
the ``X-API-KEY`` header and is scrubbed from every message this module produces.

Ingestion sends the batches of one call concurrently (``concurrency`` requests in flight): against
the real API each request waits a network round trip, and the gzip of a body releases the GIL, so
parallel batches use every core and hide latency. Records that come pre-rendered in one buffer
(:class:`JsonArraySource`, e.g. the events sync's rendered chunks) are compressed straight from that
buffer, without building a Python string per batch.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Protocol

import orjson
import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from amberflo_sync.redaction import InvalidApiKeyError, clean_api_key, redact, register_secret
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


class AmberfloInvalidKeyError(AmberfloError, ValueError):
    """The API key cannot be sent (whitespace or non-printable characters inside it)."""


class AmberfloUnavailableError(AmberfloError):
    """Retries were exhausted (429/5xx/connection errors/timeouts for longer than the budget)."""


class AmberfloSystemicRefusal(AmberfloError):
    """Amberflo refuses a batch for one reason that is not one bad record: every record probed alone
    was refused for the same reason (e.g. all of them belong to a customer Amberflo does not know
    yet), or more records than ``IsolatingSender.max_refused_per_reason`` were. Raised by
    :class:`amberflo_sync.isolation.IsolatingSender` instead of bisecting row by row: the run fails
    with Amberflo's message, no watermark moves, and nothing is recorded as rejected.

    Not an :class:`AmberfloRejectedError` on purpose: code that isolates or records refused records
    catches that class, and must not swallow this one.

    :ivar status: HTTP status of the refusals.
    :ivar detail: Amberflo's message (of the first refusal of that reason).
    :ivar reason: the message with its numbers masked, the key refusals were grouped by.
    :ivar records: records in the batch being isolated.
    :ivar refused: records seen refused for that reason before giving up.
    :ivar isolation_requests: sends spent isolating this batch before giving up.
    """

    def __init__(self, message: str, *, status: int, detail: str, reason: str, records: int, refused: int,
                 isolation_requests: int) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail
        self.reason = reason
        self.records = records
        self.refused = refused
        self.isolation_requests = isolation_requests


class AmberfloShortIngestError(AmberfloError):
    """Amberflo answered ``N records were ingested`` with N short of the batch, and still did after
    the batch was re-sent ``short_ingest_resends`` times (identical bytes: Amberflo de-duplicates
    them, so a re-send can never bill twice). Which records were dropped is unknown, so the batch —
    and with it the run — fails: no watermark moves and the next run sends the window again.

    :ivar sent: records in the batch.
    :ivar ingested: the count of Amberflo's last answer.
    :ivar attempts: answers received for the batch (the first send plus the re-sends).
    """

    def __init__(self, message: str, *, sent: int, ingested: int, attempts: int) -> None:
        super().__init__(message)
        self.sent = sent
        self.ingested = ingested
        self.attempts = attempts


@dataclass(frozen=True)
class ClientSettings:
    """Everything needed to talk to Amberflo, parsed from the ``amberflo_default`` connection.

    :param base_url: API base URL, e.g. ``https://app.amberflo.io``.
    :param api_key: the ``X-API-KEY`` value (never logged).
    :param ingest_url: ingestion endpoint; default ``<base_url>/ingest``.
    :param batch_size: records per ingestion request.
    :param connect_timeout: seconds to establish a connection.
    :param read_timeout: seconds to wait for a response.
    :param concurrency: parallel requests allowed: ingestion batches of one call in flight at once,
        customers API calls; also the connection pool size.
    :param gzip_level: compression level of ingestion bodies. 1 (zlib's fastest) by default: level 5
        cost 2.7 µs of CPU per record against 1.3 µs, the largest single cost of the events sync,
        for bodies only ~20 % smaller (issue 6 benchmark).
    :param short_ingest_resends: how many times a batch whose answer counts fewer records than it
        holds is re-sent (same bytes) before :class:`AmberfloShortIngestError` fails it.
    """

    base_url: str
    api_key: str = field(repr=False)
    ingest_url: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    concurrency: int = 8
    gzip_level: int = 1
    short_ingest_resends: int = 2

    @property
    def resolved_ingest_url(self) -> str:
        return self.ingest_url or f"{self.base_url.rstrip('/')}/ingest"


@dataclass
class ClientStats:
    """Counters of one client's life: requests made, retries, records accepted, and the seconds
    spent building bodies (``serialize_seconds``: join + gzip) and in HTTP calls
    (``send_seconds``), summed over all sending threads."""

    requests: int = 0
    retries: int = 0
    records_sent: int = 0
    batches_sent: int = 0
    short_ingest_resends: int = 0
    serialize_seconds: float = 0.0
    send_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **deltas: float) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)


_INGESTED_RE = re.compile(r"^\s*(\d+) records? were ingested")


_INGEST_HEADERS = {"Content-Type": "application/json", "Content-Encoding": "gzip"}

#: Bodies compressed at once, process-wide: one fewer than the cores this process may use (at least
#: one). ``concurrency`` requests may wait on the network together, but compressing is CPU work, and
#: the thread rendering the next chunk — the critical path of the events sync — needs a core of its
#: own: on 2 cores, one compressing thread instead of two made the sync ~12 % faster (issue 6).
def _usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells, else all of them)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


_COMPRESSING = threading.BoundedSemaphore(max(1, _usable_cores() - 1))


class JsonArraySource(Protocol):
    """Records already rendered into one buffer that can hand out the bytes of a JSON array of any
    contiguous run of them without copying (see ``amberflo_sync.transform.RenderedRecords``)."""

    def __len__(self) -> int: ...

    def json_array_parts(self, start: int, stop: int) -> Sequence[bytes | memoryview]:
        """Pieces whose concatenation is ``"[" + ",".join(records[start:stop]) + "]"`` in UTF-8."""
        ...


class AmberfloClient:
    """Talks to Amberflo over one pooled :class:`requests.Session`.

    :param settings: connection settings.
    :param retry: retry policy (injected so tests can shorten it).
    :param session: optional session to reuse.
    """

    def __init__(
        self, settings: ClientSettings, *, retry: RetryPolicy | None = None, session: requests.Session | None = None
    ) -> None:
        raw_key = settings.api_key
        try:
            key = clean_api_key(raw_key)
        except InvalidApiKeyError as exc:
            raise AmberfloInvalidKeyError(str(exc)) from None
        if not key:
            raise AmberfloError("the Amberflo connection has no API key (set its password)")
        if key != raw_key:
            from dataclasses import replace

            settings = replace(settings, api_key=key)
        self._secrets = (key, raw_key)
        register_secret(raw_key)
        self.settings = settings
        self.retry = retry or RetryPolicy()
        self.stats = ClientStats()
        self._rng = random.Random()
        self.session = session or requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(4, settings.concurrency), max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update({"X-API-KEY": settings.api_key, "Accept": "application/json"})
        self._pool: ThreadPoolExecutor | None = None
        self._route: _IngestRoute | Literal[False] | None = None
        self._pool_lock = threading.Lock()

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self.session.close()

    def __enter__(self) -> AmberfloClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- ingestion ------------------------------------------------------------------------------
    @staticmethod
    def build_ingest_body(records: Sequence[str] | JsonArraySource, gzip_level: int = 1) -> bytes:
        """A gzip'd JSON array of already-rendered record objects (deterministic: no timestamp)."""
        return _gzip_parts(_json_array_parts(records, 0, len(records)), gzip_level)

    def ingest_batch(self, records: Sequence[str] | JsonArraySource) -> int:
        """Send one batch of JSON records; returns how many Amberflo accepted.

        :raises AmberfloRejectedError: Amberflo refused the batch (400 names the record and field).
        :raises AmberfloUnavailableError: retries exhausted.
        """
        return self._ingest_span(records, 0, len(records))

    def ingest_records(self, records: Sequence[str] | JsonArraySource, batch_size: int | None = None) -> int:
        """Send records in batches of ``batch_size`` (default from settings), up to ``concurrency``
        batches at once; returns how many were accepted once every batch was.

        :raises AmberfloError: the first batch that failed; batches not yet started are cancelled
            and the ones in flight are waited for, so nothing is still sending when this returns.
        """
        size = batch_size or self.settings.batch_size
        spans = [(start, min(start + size, len(records))) for start in range(0, len(records), size)]
        if len(spans) <= 1 or self.settings.concurrency <= 1:
            return sum(self._ingest_span(records, start, stop) for start, stop in spans)
        futures = [self._ingest_pool().submit(self._ingest_span, records, start, stop) for start, stop in spans]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in futures if f in done and f.exception() is not None]
        if failed:
            for future in pending:
                future.cancel()
            wait(pending)
            raise failed[0].exception()  # type: ignore[misc]
        return sum(f.result() for f in futures)

    def _ingest_span(self, records: Sequence[str] | JsonArraySource, start: int, stop: int) -> int:
        count = stop - start
        if count <= 0:
            return 0
        with _COMPRESSING:  # CPU-bound: leaves a core to the thread rendering records
            began = time.perf_counter()
            body = _gzip_parts(_json_array_parts(records, start, stop), self.settings.gzip_level)
            built = time.perf_counter()
        self._post_checked(body, count)
        self.stats.add(
            records_sent=count,
            batches_sent=1,
            serialize_seconds=built - began,
            send_seconds=time.perf_counter() - built,
        )
        return count

    def _post_checked(self, body: bytes, count: int) -> None:
        """POST one ingestion body and check Amberflo's count against the ``count`` records it holds.

        A count short of the batch is not success: the body is re-sent as is (identical records are
        de-duplicated by Amberflo, so this verifies without billing twice; whether Amberflo's count
        includes records it already had is not published — the emulator counts them) up to
        ``short_ingest_resends`` times, then :class:`AmberfloShortIngestError`. Isolating by
        bisection was not chosen: a short count names no record, and a half answered in full may
        only mean the drop was transient. An answer without a readable count is taken as success
        (Amberflo's 200 is the contract; the text is informative). A count above the batch is logged.
        """
        route = self._ingest_route()
        url = self.settings.resolved_ingest_url
        attempts = 0
        while True:
            attempts += 1
            if route is None:
                response = self.request("POST", url, data=body, headers=dict(_INGEST_HEADERS))
            else:
                response = self.request("POST", url, transport=lambda: route.post(body))
            match = _INGESTED_RE.match(response.text or "")
            ingested = int(match.group(1)) if match else count
            if ingested >= count:
                if ingested > count:
                    log.warning("Amberflo reported %d records ingested for a batch of %d", ingested, count)
                elif attempts > 1:
                    log.info("a batch of %d answered short was re-sent; Amberflo now counts all of it", count)
                return
            answer = self._detail(response)
            if attempts > self.settings.short_ingest_resends:
                raise AmberfloShortIngestError(
                    f"POST {url}: Amberflo answered {answer!r} for a batch of {count} records, "
                    f"{attempts} times; the run fails so that no watermark moves past records it may not hold",
                    sent=count, ingested=ingested, attempts=attempts,
                )
            log.warning("POST %s: Amberflo answered %r for a batch of %d records; re-sending the same bytes "
                        "(%d of %d)", url, answer, count, attempts, self.settings.short_ingest_resends)
            self.stats.add(short_ingest_resends=1)

    def _ingest_route(self) -> _IngestRoute | None:
        """The pooled connection ingestion posts go through (built once; None = plain session calls
        when the session is not set up with requests' own adapter)."""
        with self._pool_lock:
            if self._route is None:
                self._route = _IngestRoute.for_session(
                    self.session, self.settings.resolved_ingest_url,
                    (self.settings.connect_timeout, self.settings.read_timeout),
                ) or False
            return self._route or None

    def _ingest_pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="amberflo-ingest")
            return self._pool

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

    # -- usage (reconciliation) -----------------------------------------------------------------
    def query_usage(self, query: dict[str, Any]) -> dict[str, Any]:
        """One ``POST /usage`` query (``shared/spec/amberflo-api.md``, "Usage"), retried like any call."""
        return self.request("POST", self._url("/usage"), json=query).json()

    def query_usage_batch(self, queries: Sequence[dict[str, Any]], *, sparse: bool = False) -> list[dict[str, Any]]:
        """``POST /usage/batch``: many queries (any meters) in one call, answered in the same order.

        :param sparse: ``POST /usage/sparse/batch`` instead: the same answers without the empty
            buckets — far smaller when most customers have no usage in most hours.
        :raises AmberfloError: the call failed, or the answer does not hold one result per query.
        """
        path = "/usage/sparse/batch" if sparse else "/usage/batch"
        answers = orjson.loads(self.request("POST", self._url(path), json=list(queries)).content)
        if not isinstance(answers, list) or len(answers) != len(queries):
            raise AmberfloError(f"/usage/batch answered {type(answers).__name__} for {len(queries)} queries")
        return answers

    def usage_events(
        self,
        meter_api_name: str,
        *,
        start_seconds: int,
        end_seconds: int,
        customer_id: str | None = None,
        page_size: int = 1000,
    ) -> Iterable[dict[str, Any]]:
        """The raw records Amberflo holds for a meter (and customer) in ``[start, end)``, as dicts,
        following ``nextPageToken`` through every page of ``GET /usage/events``."""
        params: dict[str, Any] = {"meterApiName": meter_api_name, "startTimeInSeconds": start_seconds,
                                  "endTimeInSeconds": end_seconds, "pageSize": page_size}
        if customer_id is not None:
            params["customerId"] = customer_id
        while True:
            page = self.request("GET", self._url("/usage/events"), params=params).json()
            columns = page.get("columns") or []
            for row in page.get("rows") or []:
                yield dict(zip(columns, row))
            token = page.get("nextPageToken")
            if not token:
                return
            params["nextPageToken"] = token

    # -- one request, retried -------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        *,
        ok_statuses: Iterable[int] = (200, 201, 202, 204),
        transport: Callable[[], requests.Response] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one request under the retry policy and check its answer.

        :param transport: makes one attempt (default: ``session.request(method, url, **kwargs)``).
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
                if transport is not None:
                    response = transport()
                else:
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
        return redact(text, self._secrets)


def _json_array_parts(records: Sequence[str] | JsonArraySource, start: int, stop: int) -> Sequence[bytes | memoryview]:
    """The bytes of ``[record, …]`` for ``records[start:stop]``: zero-copy from a pre-rendered
    buffer, else one join of the strings."""
    parts = getattr(records, "json_array_parts", None)  # a Protocol isinstance() costs ~30 µs
    if parts is not None:
        return parts(start, stop)
    return [("[" + ",".join(records[start:stop]) + "]").encode("utf-8")]


def _gzip_parts(parts: Sequence[bytes | memoryview], level: int) -> bytes:
    """One gzip member (mtime 0, so equal input gives equal bytes) of the concatenated ``parts``;
    zlib releases the GIL while it compresses."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    out = [compressor.compress(part) for part in parts]
    out.append(compressor.flush())
    return b"".join(out)


@dataclass(frozen=True)
class _IngestRoute:
    """How ingestion bodies reach Amberflo: the session's own urllib3 pool, proxies, TLS settings
    and headers, resolved once per client.

    ``requests.Session.request`` redoes per call what cannot change during a sync — scanning the
    environment for proxies and CA bundles, reading ``.netrc``, merging headers and cookies,
    wrapping the response — about two thirds of its ~0.6 ms of GIL-holding CPU per call. On the
    ingestion hot path (thousands of posts, several threads) that contention slowed every other
    stage, so posts go straight to the pool ``requests`` would have picked. Redirects are not
    followed (Amberflo's ingestion endpoint answers, it does not redirect); a 3xx fails the batch.
    """

    pool: Any
    url: str
    headers: dict[str, str]
    timeout: urllib3.Timeout
    retries: Any

    @classmethod
    def for_session(cls, session: requests.Session, url: str, timeout: tuple[float, float]) -> _IngestRoute | None:
        adapter = session.get_adapter(url)
        if type(adapter) is not HTTPAdapter:
            return None
        prepared = session.prepare_request(requests.Request("POST", url, headers=_INGEST_HEADERS))
        env = session.merge_environment_settings(prepared.url, {}, None, None, None)
        pool = adapter.get_connection_with_tls_context(prepared, env["verify"], env["proxies"], env["cert"])
        headers = {k: v for k, v in prepared.headers.items() if k.lower() not in ("content-length", "transfer-encoding")}
        return cls(
            pool=pool,
            url=adapter.request_url(prepared, env["proxies"]),
            headers=headers,  # urllib3 sets Content-Length for each body
            timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
            retries=adapter.max_retries,
        )

    def post(self, body: bytes) -> requests.Response:
        """One POST; network failures surface as the ``requests`` exceptions the retry loop knows."""
        try:
            raw = self.pool.urlopen(
                "POST", self.url, body=body, headers=self.headers, redirect=False, assert_same_host=False,
                preload_content=True, decode_content=True, retries=self.retries, timeout=self.timeout,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            if isinstance(reason, urllib3.exceptions.ReadTimeoutError):
                raise requests.ReadTimeout(exc) from exc
            if isinstance(reason, urllib3.exceptions.ConnectTimeoutError) and not isinstance(
                reason, urllib3.exceptions.NewConnectionError
            ):
                raise requests.ConnectTimeout(exc) from exc
            raise requests.ConnectionError(exc) from exc
        response = requests.Response()
        response.status_code = raw.status
        response.reason = raw.reason
        response.headers = CaseInsensitiveDict(raw.headers)
        response._content = raw.data
        response.encoding = requests.utils.get_encoding_from_headers(response.headers) or "utf-8"
        response.url = self.url
        return response
