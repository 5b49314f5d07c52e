"""A stand-in for Amberflo's HTTP API on loopback, for the demo, the tests and the benchmarks.

It is stricter than Amberflo is known to be (every record validated, all or nothing), de-duplicates
exactly as Amberflo says it does, and injects the failures a real client meets (429, 5xx, dropped
connections, slow answers, outages, a rotated key) on demand and reproducibly.

Run it with ``python -m amberflo_sync.emulator --port 8765 --api-key KEY`` or, in Python::

    with EmulatorServer(api_key="test-key") as emulator:
        ...  # talk to emulator.url
"""

from .faults import FAULT_KINDS, FaultConfig
from .server import EmulatorServer, loopback_address
from .store import COUNTERS, stripe_id_for
from .validation import ALLOWED_VALUE_CHARACTERS, MAX_VALUE_LENGTH

__all__ = [
    "ALLOWED_VALUE_CHARACTERS",
    "COUNTERS",
    "EmulatorServer",
    "FAULT_KINDS",
    "FaultConfig",
    "MAX_VALUE_LENGTH",
    "loopback_address",
    "stripe_id_for",
]
