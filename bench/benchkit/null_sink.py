"""A null Amberflo ingestion sink: reads each body, counts its records, answers ``200 N records were ingested``.

Runs as its own process (``python bench/benchkit/null_sink.py --port 0 --ready-file F``) so that its
CPU and memory are never charged to the client being measured. HTTP/1.1 with keep-alive and exact
``Content-Length``, one thread per connection, loopback only. It stores nothing: the count comes from
decompressing the body and counting ``"uniqueId"`` keys (dimension values cannot contain a quote, so
the count is exact), which is the least work an honest receiver can do.

``GET /__stats`` answers ``{"requests", "records", "body_bytes", "raw_bytes"}``; ``POST /__reset``
zeroes them. Any other POST path (``/ingest``, the SDK's ``/ingest/``) is an ingestion.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import zlib
from pathlib import Path

_RECORD_KEY = b'"uniqueId"'


class Counters:
    """What the sink received, behind one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.requests = self.records = self.body_bytes = self.raw_bytes = 0

    def add(self, records: int, body: int, raw: int) -> None:
        with self.lock:
            self.requests += 1
            self.records += records
            self.body_bytes += body
            self.raw_bytes += raw

    def as_json(self) -> bytes:
        with self.lock:
            return json.dumps({"requests": self.requests, "records": self.records,
                               "body_bytes": self.body_bytes, "raw_bytes": self.raw_bytes}).encode()


def _respond(conn: socket.socket, status: str, body: bytes, content_type: str = "text/plain") -> None:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Connection: keep-alive\r\n\r\n").encode()
    conn.sendall(head + body)


def _serve_connection(conn: socket.socket, counters: Counters) -> None:
    reader = conn.makefile("rb", buffering=256 * 1024)
    try:
        while True:
            request_line = reader.readline(65536)
            if not request_line:
                return
            method, path = request_line.split(b" ", 2)[:2]
            headers: dict[bytes, bytes] = {}
            while True:
                line = reader.readline(65536)
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0"))
            body = reader.read(length) if length else b""
            if method == b"GET" and path == b"/__stats":
                _respond(conn, "200 OK", counters.as_json(), "application/json")
            elif method == b"POST" and path == b"/__reset":
                with counters.lock:
                    counters.reset()
                _respond(conn, "200 OK", b"{}", "application/json")
            elif method == b"POST":
                raw = zlib.decompress(body, 31) if headers.get(b"content-encoding") == b"gzip" else body
                records = raw.count(_RECORD_KEY)
                counters.add(records, len(body), len(raw))
                _respond(conn, "200 OK", f"{records} records were ingested".encode())
            else:
                _respond(conn, "404 Not Found", b"not found")
    except (ConnectionError, ValueError):
        return
    finally:
        reader.close()
        conn.close()


def serve(port: int, ready_file: Path | None) -> None:
    counters = Counters()
    server = socket.create_server(("127.0.0.1", port), backlog=128)
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    if ready_file is not None:
        tmp = ready_file.with_name(ready_file.name + ".tmp")
        tmp.write_text(url + "\n")
        tmp.replace(ready_file)
    print(f"null sink listening on {url}", flush=True)
    while True:
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_serve_connection, args=(conn, counters), daemon=True).start()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", type=Path)
    args = parser.parse_args()
    try:
        serve(args.port, args.ready_file)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
