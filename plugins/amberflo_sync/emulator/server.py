"""The emulator's HTTP face: a loopback-only server speaking Amberflo's ingestion and customers API.

Loopback is the default and the only choice for tests and the demo. A container has to listen on its
own interface for its neighbours on the compose network to reach it; that needs an explicit opt-in
(:class:`EmulatorServer` with ``allow_non_loopback=True``; the CLI's ``--allow-container-bind``).

Tests, the demo and the benchmarks talk to it over real HTTP so that the client's whole stack — URL
building, gzip, keep-alive, timeouts, retries — is exercised, not a mock of it. The server is a
:class:`http.server.ThreadingHTTPServer` speaking HTTP/1.1 with exact ``Content-Length`` so that a
``requests.Session`` keeps its connection alive, as it would against Amberflo.

Routes (``shared/spec/amberflo-api.md``)::

    POST   /ingest                              meter records (object or array; gzip allowed)
    GET    /customers  | /customers/            all customers, or one with ?customerId=<id>
    GET    /customers/<id>                      one customer, or {} when missing
    POST   /customers[?autoCreateCustomerInStripe=true]
    PUT    /customers  | /customers/<id>        replace a customer (404 when missing)
    DELETE /customers/<id>                      remove a customer (a deletion by hand)
    POST   /usage | /usage/sparse               usage of one meter (emulator/usage.py)
    POST   /usage/batch | /usage/sparse/batch   a list of usage queries, answered as a list
    GET    /usage/events                        raw stored records, paged
    GET    /__emulator/{stats,records,customers,faults,health,drift}   no key, no faults
    POST   /__emulator/{reset,faults}
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from .faults import FaultConfig, FaultDecision, FaultInjector
from .payload import MAX_BODY_BYTES, PayloadError, decompress, meter_records_of, parse_json
from .store import CANCEL_DIMENSION, CustomerExistsError, CustomerNotFoundError, EmulatorStore
from .usage import UsageIndex, UsageQueryError, answer_events, answer_usage
from .validation import (
    CustomerError,
    MeterBatch,
    RecordError,
    validate_customer,
    validate_meter_records,
)

#: Host names the emulator may bind to, with the address actually bound and its family.
LOOPBACK_HOSTS: dict[str, tuple[str, socket.AddressFamily]] = {
    "127.0.0.1": ("127.0.0.1", socket.AF_INET),
    "localhost": ("127.0.0.1", socket.AF_INET),
    "::1": ("::1", socket.AF_INET6),
    "[::1]": ("::1", socket.AF_INET6),
}

_ADMIN_PREFIX = "/__emulator"
_JSON = "application/json"
_TEXT = "text/plain"


def loopback_address(host: str) -> tuple[str, socket.AddressFamily]:
    """The address to bind for ``host``, refusing anything but loopback.

    The emulator accepts any client holding a test key and keeps everything in memory; it must never
    be reachable from another machine.

    :raises ValueError: when ``host`` is not 127.0.0.1, localhost or ::1.
    """
    try:
        return LOOPBACK_HOSTS[host.strip().lower()]
    except KeyError:
        raise ValueError(
            f"refusing to bind to {host!r}: the emulator listens on loopback only "
            "(127.0.0.1, localhost or ::1)"
        ) from None


def bind_address(host: str, *, allow_non_loopback: bool = False) -> tuple[str, socket.AddressFamily]:
    """The address to bind for ``host``: loopback only, unless ``allow_non_loopback`` is given.

    With ``allow_non_loopback`` an IP literal is accepted too — ``0.0.0.0`` or ``::`` (every
    interface, as a container must listen) or one interface's address. Host names other than
    ``localhost`` are always refused: binding must never depend on a DNS answer.

    :param host: the host to listen on.
    :param allow_non_loopback: the caller's explicit decision that the emulator may be reachable
        from other machines (only inside a container on a private network).
    :raises ValueError: when ``host`` is not allowed.
    """
    try:
        return loopback_address(host)
    except ValueError:
        if not allow_non_loopback:
            raise
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(
            f"refusing to bind to {host!r}: a non-loopback host must be an IP address "
            "(0.0.0.0, :: or one interface's address), not a name"
        ) from None
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    return str(address), family


@dataclass
class _ServerState:
    """What every request handler needs: the key, the data and the fault plan."""

    api_key: bytes
    store: EmulatorStore
    injector: FaultInjector
    usage: UsageIndex | None = None

    def __post_init__(self) -> None:
        if self.usage is None:
            self.usage = UsageIndex(self.store)


class _HttpError(Exception):
    """A request that cannot be read; answered with ``status`` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


def _error(message: str) -> bytes:
    return orjson.dumps({"error": message})


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its open connections, so that ``stop()`` can end them."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        family: socket.AddressFamily,
        state: _ServerState,
    ) -> None:
        self.address_family = family
        self.state = state
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a DNS lookup that can stall for seconds.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End every kept-alive connection (their threads are blocked reading the next request)."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    """One connection's requests; the routing and the answers of the emulated API."""

    protocol_version = "HTTP/1.1"
    server_version = "amberflo-emulator"
    sys_version = ""
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        try:  # answers are one write, but never let Nagle delay a small one
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silenced: per-request logging would dominate the benchmark and flood test output."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle("PATCH")

    # --- plumbing -----------------------------------------------------------------------------------

    def _respond(
        self,
        status: int,
        body: bytes,
        content_type: str = _JSON,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Write the whole answer in one ``send`` (status line, headers, body)."""
        lines = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
        ]
        if headers:
            lines.extend(f"{name}: {value}" for name, value in headers.items())
        if self.close_connection:
            lines.append("Connection: close")
        lines.append("\r\n")
        try:
            self.wfile.write("\r\n".join(lines).encode("latin-1") + body)
        except OSError:  # the client gave up (e.g. its read timeout during a slow answer)
            self.close_connection = True

    def _read_body(self) -> bytes:
        """Read the request body (``Content-Length`` or chunked) so the connection stays in sync."""
        if self.headers.get("Transfer-Encoding", "").strip().lower() == "chunked":
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            raise _HttpError(400, "invalid Content-Length header") from None
        if length < 0:
            raise _HttpError(400, "invalid Content-Length header")
        if length > MAX_BODY_BYTES:
            raise _HttpError(413, "request body is too large")
        body = self.rfile.read(length)
        if len(body) != length:
            raise ConnectionError("client closed the connection mid-body")
        return body

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _HttpError(400, "invalid chunked body") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise _HttpError(413, "request body is too large")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _drop(self) -> None:
        """Close the connection without a byte of answer (an injected network failure)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _handle(self, method: str) -> None:
        """Read the whole request, then route it to the admin or the emulated API endpoints.

        The body is always read first, even for a request about to fail, so that the next request
        on a kept-alive connection starts where it should.
        """
        split = urlsplit(self.path)
        path = split.path
        query = parse_qs(split.query)
        try:
            body = self._read_body()
        except _HttpError as error:
            self.close_connection = True
            self._respond(error.status, _error(error.message))
            return
        except ConnectionError:
            self.close_connection = True
            return
        if path == _ADMIN_PREFIX or path.startswith(_ADMIN_PREFIX + "/"):
            self._admin(method, path[len(_ADMIN_PREFIX) :].strip("/"), query, body)
        else:
            self._api(method, path, query, body)

    # --- the emulated API ---------------------------------------------------------------------------

    def _api(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
        """One request to the emulated API, in the order a gateway in front of Amberflo would go.

        Count it, add the configured latency, route it, apply an injected fault (which replaces the
        answer and stores nothing — except *slow*, which is processed normally and answered late),
        check the key, then handle it.
        """
        state = self.server.state
        store = state.store
        store.count("requests")
        latency = state.injector.latency_s
        if latency:
            time.sleep(latency)
        route = _route(method, path)
        if isinstance(route, int):  # 404 / 405: not an emulated endpoint, so no faults either
            message = "no such endpoint" if route == 404 else f"method {method} not allowed here"
            self._respond(route, _error(message))
            return
        decision = state.injector.decide()
        if decision.kind is not None and decision.kind != "slow":
            store.count(f"fault_{decision.kind}")
            self._answer_fault(decision)
            return
        if not self._authorized(state.api_key):
            return
        name, argument = route
        batch: MeterBatch | None = None
        extras: dict[str, Any] = {}
        if name == "ingest":
            status, payload, content_type, batch = self._ingest(body)
            if batch is not None:
                extras = self._ingest_extras(batch, body)
        elif name.startswith("usage"):
            status, payload, content_type = self._usage(name, query, body)
        else:
            status, payload, content_type = self._customers(name, argument, query, body)
        if status in (400, 413, 415):
            store.count("rejected_requests")
        answer = functools.partial(self._respond, status, payload, content_type)
        if decision.delay_after_s:  # a slow answer: stored first, answered late
            if batch is not None:
                store.add_meter_records(batch, **extras)
            store.count("fault_slow")
            time.sleep(decision.delay_after_s)
            answer()
        elif batch is not None:
            store.add_meter_records(batch, announce=answer, **extras)  # answer while the records are stored
        else:
            answer()

    def _answer_fault(self, decision: FaultDecision) -> None:
        if decision.drop:
            self._drop()
            return
        assert decision.status is not None
        headers = None
        if decision.retry_after is not None:
            headers = {"Retry-After": str(decision.retry_after)}
        if decision.kind == "wrong_key":
            message = "invalid API key (injected fault: wrong key period)"
        elif decision.kind == "outage":
            message = "service unavailable (injected fault: outage)"
        else:
            message = f"{HTTPStatus(decision.status).phrase} (injected fault)"
        self._respond(decision.status, _error(message), headers=headers)

    def _authorized(self, api_key: bytes) -> bool:
        """Check ``X-API-KEY``; answer 401 (never echoing any key) when it is missing or wrong."""
        given = self.headers.get("X-API-KEY")
        if given is not None and hmac.compare_digest(
            given.encode("latin-1", errors="replace"), api_key
        ):
            return True
        self.server.state.store.count("unauthorized")
        message = "missing X-API-KEY header" if given is None else "invalid API key"
        self._respond(401, _error(message))
        return False

    def _ingest(self, body: bytes) -> tuple[int, bytes, str, MeterBatch | None]:
        """Decode and validate an ingestion request; the batch to store comes back on success."""
        self.server.state.store.count("ingest_requests")
        try:
            data = decompress(body, self.headers.get("Content-Encoding"))
            self._ingest_data = data  # cancellations are looked for in it (_ingest_extras)
            batch = validate_meter_records(meter_records_of(parse_json(data)))
            refused = self.server.state.injector.config.refuse_customers
            if refused:
                for index, customer in enumerate(batch.customer_ids):
                    if customer in refused:
                        raise RecordError(index, "customerId", "this customer does not exist")
        except PayloadError as error:
            return error.status, _error(str(error)), _JSON, None
        except RecordError as error:
            return 400, _error(str(error)), _JSON, None
        short = min(self.server.state.injector.short_ingest_by(), len(batch))
        if short:  # an answer short of the batch: only the records counted are stored
            kept = len(batch) - short
            batch = MeterBatch(*(column[:kept] for column in (
                batch.unique_ids, batch.customer_ids, batch.meter_names, batch.meter_values, batch.millis,
                batch.dimensions)))
            self.server.state.store.count("fault_short_ingest")
        return 200, f"{len(batch)} records were ingested".encode("ascii"), _TEXT, batch

    def _ingest_extras(self, batch: MeterBatch, body: bytes) -> dict[str, Any]:
        """Cancellation records and drift faults of an accepted batch (empty in the usual case).

        Cancellations are looked for only when the dimension's name occurs in the (decompressed)
        body at all, so ordinary batches pay one substring search.
        """
        extras: dict[str, Any] = {}
        data = getattr(self, "_ingest_data", b"")
        if CANCEL_DIMENSION.encode("ascii") in data:
            cancellations = [i for i, dimensions in enumerate(batch.dimensions)
                             if dimensions and dimensions.get(CANCEL_DIMENSION) == "true"]
            if cancellations:
                extras["cancellations"] = cancellations
        self._ingest_data = b""  # not kept alive until the connection's next request
        drift = self.server.state.injector.record_drift(len(batch))
        if drift is not None:
            extras["drift"] = drift
        return extras

    def _usage(self, name: str, query: dict[str, list[str]], body: bytes) -> tuple[int, bytes, str]:
        """The usage API (``emulator/usage.py``): aggregated usage, in batches, and raw events."""
        state = self.server.state
        state.store.count("usage_requests")
        assert state.usage is not None
        try:
            if name == "usage.events":
                return 200, orjson.dumps(answer_events(state.usage, state.store, query)), _JSON
            parsed = parse_json(decompress(body, self.headers.get("Content-Encoding")) or b"null")
            sparse = ".sparse" in name
            if name.endswith(".batch"):
                if not isinstance(parsed, list):
                    raise UsageQueryError("a batch body must be a JSON array of usage queries")
                answer: Any = [answer_usage(state.usage, q, sparse=sparse) for q in parsed]
            else:
                answer = answer_usage(state.usage, parsed, sparse=sparse)
        except PayloadError as error:
            return error.status, _error(str(error)), _JSON
        except UsageQueryError as error:
            return 400, _error(str(error)), _JSON
        return 200, orjson.dumps(answer), _JSON

    def _customers(
        self, name: str, customer_id: str | None, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, bytes, str]:
        store = self.server.state.store
        if name == "customers.get":
            store.count("customer_gets")
            if customer_id is None and "customerId" in query:
                customer_id = query["customerId"][0]
            if customer_id is None:
                return 200, orjson.dumps(list(store.customers().values())), _JSON
            return 200, orjson.dumps(store.get_customer(customer_id) or {}), _JSON
        if name == "customers.delete":
            store.count("customer_deletes")
            assert customer_id is not None
            deleted = store.delete_customer(customer_id)
            if deleted is None:
                return 404, _error(f"customer {customer_id!r} not found"), _JSON
            return 200, orjson.dumps(deleted), _JSON
        store.count("customer_posts" if name == "customers.post" else "customer_puts")
        try:
            parsed = parse_json(decompress(body, self.headers.get("Content-Encoding")))
            customer = validate_customer(parsed)
        except PayloadError as error:
            return error.status, _error(str(error)), _JSON
        except CustomerError as error:
            return 400, _error(str(error)), _JSON
        if customer_id is not None and customer["customerId"] != customer_id:
            return 400, _error("field 'customerId': does not match the id in the URL"), _JSON
        if customer["customerId"] in self.server.state.injector.config.refuse_customer_writes:
            return 400, _error(f"customer {customer['customerId']!r} refused (injected fault)"), _JSON
        if name == "customers.post":
            stripe = query.get("autoCreateCustomerInStripe", ["false"])[0].lower() == "true"
            try:
                created = store.create_customer(customer, with_stripe=stripe)
            except CustomerExistsError:
                message = f"customer {customer['customerId']!r} already exists"
                return 409, _error(message), _JSON
            return 200, orjson.dumps(created), _JSON
        try:
            replaced = store.replace_customer(customer)
        except CustomerNotFoundError:
            return 404, _error(f"customer {customer['customerId']!r} not found"), _JSON
        return 200, orjson.dumps(replaced), _JSON

    # --- admin endpoints (no key, no faults, not counted) ------------------------------------------

    def _admin(self, method: str, name: str, query: dict[str, list[str]], body: bytes) -> None:
        state = self.server.state
        key = (method, name)
        if key == ("GET", "stats"):
            self._respond(200, orjson.dumps(state.store.stats()))
        elif key == ("GET", "records"):
            meter = query.get("meterApiName", [None])[0]
            self._respond(200, state.store.records_json(meter))
        elif key == ("GET", "customers"):
            self._respond(200, orjson.dumps(state.store.customers()))
        elif key == ("GET", "faults"):
            self._respond(200, orjson.dumps(state.injector.config.to_dict()))
        elif key == ("GET", "drift"):
            self._respond(200, orjson.dumps(state.store.drift()))
        elif key == ("GET", "health"):
            self._respond(200, orjson.dumps({"status": "ok"}))
        elif key == ("POST", "reset"):
            keep_faults = query.get("keepFaults", ["false"])[0].lower() == "true"
            _reset(state, keep_faults=keep_faults)
            self._respond(200, orjson.dumps({"reset": True, "keepFaults": keep_faults}))
        elif key == ("POST", "faults"):
            try:
                config = FaultConfig.from_dict(parse_json(body or b"{}"))
            except (PayloadError, ValueError, TypeError) as error:
                self._respond(400, _error(str(error)))
                return
            state.injector.configure(config)
            self._respond(200, orjson.dumps(config.to_dict()))
        elif name in ("stats", "records", "customers", "faults", "health", "reset", "drift"):
            self._respond(405, _error(f"method {method} not allowed here"))
        else:
            self._respond(404, _error("no such emulator endpoint"))


def _route(method: str, path: str) -> tuple[str, str | None] | int:
    """Map an API request to ``(handler name, customer id from the URL)``, or a 404/405 status."""
    if path in ("/ingest", "/ingest/"):
        return ("ingest", None) if method == "POST" else 405
    if path in ("/customers", "/customers/"):
        names = {"GET": "customers.get", "POST": "customers.post", "PUT": "customers.put"}
        return (names[method], None) if method in names else 405
    usage = {"/usage": "usage.dense", "/usage/batch": "usage.dense.batch", "/usage/sparse": "usage.sparse",
             "/usage/sparse/batch": "usage.sparse.batch"}
    if path.rstrip("/") in usage:
        return (usage[path.rstrip("/")], None) if method == "POST" else 405
    if path.rstrip("/") == "/usage/events":
        return ("usage.events", None) if method == "GET" else 405
    if path.startswith("/customers/"):
        customer_id = unquote(path[len("/customers/") :].rstrip("/"))
        names = {"GET": "customers.get", "PUT": "customers.put", "DELETE": "customers.delete"}
        return (names[method], customer_id) if method in names else 405
    return 404


def _reset(state: _ServerState, *, keep_faults: bool) -> None:
    state.store.reset()
    state.injector.configure(state.injector.config if keep_faults else FaultConfig())


class EmulatorServer:
    """A running Amberflo emulator on loopback, for tests, the demo and benchmarks.

    Usage::

        with EmulatorServer(api_key="test-key") as emulator:
            requests.post(f"{emulator.url}/ingest", json=record, headers={"X-API-KEY": "test-key"})
            assert emulator.stats()["distinct"] == 1

    :param api_key: the only key accepted in ``X-API-KEY``; never printed or echoed.
    :param host: 127.0.0.1, localhost or ::1 — anything else raises :class:`ValueError` unless
        ``allow_non_loopback`` is given.
    :param port: TCP port; 0 picks a free one (read it back from :attr:`url` or :attr:`port`).
    :param faults: initial fault injection; its time windows start when the server starts.
    :param allow_non_loopback: also accept an IP address that is not loopback (``0.0.0.0`` inside a
        container, see :func:`bind_address`). Off by default: the emulator accepts anyone holding a
        test key and must not be reachable from other machines by accident.
    """

    def __init__(
        self,
        api_key: str,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultConfig | None = None,
        *,
        allow_non_loopback: bool = False,
    ) -> None:
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("api_key must be a non-empty string")
        self._bind_host, self._family = bind_address(host, allow_non_loopback=allow_non_loopback)
        self._requested_port = port
        self._state = _ServerState(
            api_key=api_key.encode("utf-8"),
            store=EmulatorStore(),
            injector=FaultInjector(faults),
        )
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    def __repr__(self) -> str:  # never shows the key
        where = self.url if self._httpd is not None else "not running"
        return f"EmulatorServer({where})"

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> EmulatorServer:
        """Bind and serve in a background (daemon) thread; returns ``self``."""
        if self._httpd is not None:
            raise RuntimeError("the emulator is already running")
        httpd = _HTTPServer((self._bind_host, self._requested_port), self._family, self._state)
        self._state.injector.configure(self._state.injector.config)  # windows start now
        self._httpd = httpd
        self._port = int(httpd.server_address[1])
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="amberflo-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and every open connection. Idempotent."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._httpd = self._thread = None
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def port(self) -> int:
        """The bound TCP port (still known after :meth:`stop`, for messages)."""
        if self._port is None:
            raise RuntimeError("the emulator has not been started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (no trailing slash)."""
        host = f"[{self._bind_host}]" if self._family == socket.AF_INET6 else self._bind_host
        return f"http://{host}:{self.port}"

    @property
    def faults(self) -> FaultConfig:
        """The fault configuration in force."""
        return self._state.injector.config

    def set_faults(self, faults: FaultConfig | None) -> None:
        """Replace the fault configuration (``None`` = no faults); time windows restart now."""
        self._state.injector.configure(faults or FaultConfig())

    def stats(self) -> dict[str, int]:
        """Snapshot of the counters (see :data:`~amberflo_sync.emulator.store.COUNTERS`)."""
        return self._state.store.stats()

    def records(self, meter_api_name: str | None = None) -> list[dict[str, Any]]:
        """Distinct stored meter records in arrival order (known fields only)."""
        return self._state.store.records(meter_api_name)

    def customers(self) -> dict[str, dict[str, Any]]:
        """Every stored customer by id."""
        return self._state.store.customers()

    def drift(self) -> dict[str, list[dict[str, Any]]]:
        """What the drift faults did: records ``lost`` and ``doubled`` copies."""
        return self._state.store.drift()

    def reset(self, keep_faults: bool = False) -> None:
        """Forget records, customers and counters; also the faults unless ``keep_faults``."""
        _reset(self._state, keep_faults=keep_faults)
