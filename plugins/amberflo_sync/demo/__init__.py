"""Demo Segment warehouse: a generator of realistic Segment warehouse data, of any size.

``generate_warehouse`` writes the embedded demo warehouse (DuckDB or PostgreSQL); tests use it and
``load_new_batch`` / ``append_load`` as a fixture factory. See :mod:`amberflo_sync.demo.generate`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from amberflo_sync.demo.generate import append_load, build_warehouse, generate_warehouse, load_new_batch

__all__ = ["append_load", "build_warehouse", "generate_warehouse", "load_new_batch"]


def __getattr__(name: str) -> Any:
    # Imported lazily so that ``python -m amberflo_sync.demo.generate`` does not import the module
    # twice (once as part of the package, once as ``__main__``).
    if name in __all__:
        from amberflo_sync.demo import generate

        return getattr(generate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
