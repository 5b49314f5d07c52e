"""Command line: run the emulator until SIGTERM/SIGINT.

    PYTHONPATH=plugins python -m amberflo_sync.emulator --port 8765 --api-key KEY [--rate-429 0.1 ...]

Prints exactly one line to stdout once it accepts connections —
``amberflo emulator listening on http://127.0.0.1:PORT`` — so that scripts can wait for it (or use
``--ready-file``). The API key may also come from ``$AMBERFLO_EMULATOR_API_KEY`` to keep it out of
``ps``; it is never printed.

It listens on loopback only. Inside a container (docker compose), where its neighbours must reach it
on the container's interface, ``--host 0.0.0.0 --allow-container-bind`` lifts that — and is honoured
only when ``AMBERFLO_EMULATOR_IN_CONTAINER=1`` is set too, so that a copied command line cannot
expose the emulator on a developer's machine.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

from .faults import FaultConfig
from .server import EmulatorServer, bind_address

API_KEY_ENV = "AMBERFLO_EMULATOR_API_KEY"
#: Must be ``1`` for ``--allow-container-bind`` to be honoured (set by the compose file only).
IN_CONTAINER_ENV = "AMBERFLO_EMULATOR_IN_CONTAINER"


def build_parser() -> argparse.ArgumentParser:
    """The CLI's arguments; fault flags mirror :class:`FaultConfig` field by field."""
    parser = argparse.ArgumentParser(
        prog="python -m amberflo_sync.emulator",
        description="Amberflo API emulator (loopback only) for demos, tests and benchmarks.",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="127.0.0.1 (default), localhost or ::1; 0.0.0.0 only with --allow-container-bind",
    )
    parser.add_argument(
        "--allow-container-bind",
        action="store_true",
        help=f"allow a non-loopback --host such as 0.0.0.0; refused unless ${IN_CONTAINER_ENV}=1 "
        "(for a container on a private network, e.g. docker compose)",
    )
    parser.add_argument("--port", type=int, default=8765, help="TCP port; 0 picks a free one")
    parser.add_argument(
        "--api-key", default=None, help=f"the accepted X-API-KEY (or set ${API_KEY_ENV})"
    )
    parser.add_argument("--ready-file", type=Path, help="write the base URL here once listening")
    faults = parser.add_argument_group("fault injection (fractions of API requests)")
    for status in ("429", "500", "502", "503"):
        faults.add_argument(f"--rate-{status}", type=float, default=0.0, metavar="FRACTION")
    faults.add_argument(
        "--retry-after", type=int, default=None, metavar="SECONDS", help="Retry-After of 429s"
    )
    faults.add_argument("--latency-ms", type=float, default=0.0, help="added to every request")
    faults.add_argument("--rate-slow", type=float, default=0.0, metavar="FRACTION",
                        help="stored, but answered after --slow-ms")
    faults.add_argument("--slow-ms", type=float, default=0.0)
    faults.add_argument("--rate-drop", type=float, default=0.0, metavar="FRACTION",
                        help="connection closed without an answer, nothing stored")
    faults.add_argument("--outage-seconds", type=float, default=0.0, help="503 for this long")
    faults.add_argument("--wrong-key-seconds", type=float, default=0.0, help="401 for this long")
    faults.add_argument("--throttle-seconds", type=float, default=0.0, help="429 (with --retry-after) for this long")
    faults.add_argument("--short-ingest-by", type=int, default=0, metavar="RECORDS",
                        help="ingestion answers (and stores) this many records fewer than sent")
    faults.add_argument("--rate-lose", type=float, default=0.0, metavar="FRACTION",
                        help="accepted records silently not stored (drift for reconciliation)")
    faults.add_argument("--rate-double", type=float, default=0.0, metavar="FRACTION",
                        help="accepted records stored twice with other bytes (a double bill)")
    faults.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
    return parser


def fault_config_from(args: argparse.Namespace) -> FaultConfig:
    """The :class:`FaultConfig` the parsed flags describe."""
    return FaultConfig(
        rate_429=args.rate_429,
        rate_500=args.rate_500,
        rate_502=args.rate_502,
        rate_503=args.rate_503,
        retry_after=args.retry_after,
        latency_ms=args.latency_ms,
        rate_slow=args.rate_slow,
        slow_ms=args.slow_ms,
        rate_drop=args.rate_drop,
        outage_seconds=args.outage_seconds,
        wrong_key_seconds=args.wrong_key_seconds,
        throttle_seconds=args.throttle_seconds,
        short_ingest_by=args.short_ingest_by,
        rate_lose=args.rate_lose,
        rate_double=args.rate_double,
        seed=args.seed,
    )


def listen_address(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> tuple[str, bool]:
    """Check ``--host`` against ``--allow-container-bind``; returns ``(host, allow_non_loopback)``.

    :param args: the parsed command line.
    :param environ: the environment (default ``os.environ``).
    :raises ValueError: ``--allow-container-bind`` without ``AMBERFLO_EMULATOR_IN_CONTAINER=1``, or
        a host that is not allowed (non-loopback without the opt-in, or a name).
    """
    environ = os.environ if environ is None else environ
    allow = bool(args.allow_container_bind)
    if allow and environ.get(IN_CONTAINER_ENV) != "1":
        raise ValueError(
            f"--allow-container-bind is honoured only inside a container: set {IN_CONTAINER_ENV}=1 "
            "(the compose file does); outside one the emulator listens on loopback only"
        )
    bind_address(args.host, allow_non_loopback=allow)
    return args.host, allow


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator until SIGTERM or SIGINT; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    api_key = args.api_key or os.environ.get(API_KEY_ENV)
    if not api_key:
        parser.error(f"an API key is required: --api-key or ${API_KEY_ENV}")
    try:
        host, allow_non_loopback = listen_address(args)
        faults = fault_config_from(args)
    except ValueError as error:
        parser.error(str(error))
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be between 0 and 65535, got {args.port}")

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    try:
        emulator = EmulatorServer(
            api_key, host=host, port=args.port, faults=faults, allow_non_loopback=allow_non_loopback
        ).start()
    except OSError as error:
        print(f"error: cannot listen on {args.host}:{args.port}: {error.strerror}", file=sys.stderr)
        return 1
    try:
        if args.ready_file is not None:
            temporary = args.ready_file.with_name(args.ready_file.name + ".tmp")
            temporary.write_text(emulator.url + "\n", encoding="utf-8")
            temporary.replace(args.ready_file)  # readers never see half a URL
        # Everything alive now (modules, classes) lives as long as the process: take it out of the
        # collector's sight, so that the full collections the request bodies' churn triggers stay
        # cheap (worth ~15% of ingestion throughput).
        gc.freeze()
        # A 500-record body parses into ~1,500 containers that all survive to the end of the request;
        # with the default threshold (700) each request pays several young-generation passes.
        gc.set_threshold(50_000, 20, 20)
        print(f"amberflo emulator listening on {emulator.url}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
