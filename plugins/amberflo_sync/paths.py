"""File names built from names the project does not control (warehouse tables, run ids).

A warehouse allows almost anything in a quoted table name — ``../``, ``/``, NUL — and an Airflow run
id holds ``:`` and ``+``. Such a name must never become a path as it is: :func:`safe_filename` turns it
into one harmless path component, and :func:`path_inside` refuses any result that would still leave
its base directory.
"""

from __future__ import annotations

from pathlib import Path

_ALLOWED = frozenset("-_.")
_MAX_LENGTH = 200


def safe_filename(name: str) -> str:
    """One path component made from ``name``: letters, digits, ``-``, ``_`` and ``.`` are kept,
    every other character (``/``, ``\\``, NUL, ``:``, spaces, …) becomes ``_``; a leading dot becomes
    ``_`` (so ``.``, ``..`` and hidden files cannot result); an empty name becomes ``_``. Deterministic:
    the same name gives the same file name on every run."""
    cleaned = "".join(ch if (ch.isascii() and ch.isalnum()) or ch in _ALLOWED else "_" for ch in str(name))
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    return cleaned[:_MAX_LENGTH] or "_"


def path_inside(base: str | Path, *names: str) -> Path:
    """``base / safe_filename(n1) / safe_filename(n2) …``, checked to lie inside ``base``.

    :raises ValueError: the result would leave ``base`` (cannot happen with :func:`safe_filename`;
        the check keeps it that way if the rules above ever change).
    """
    root = Path(base)
    path = root.joinpath(*(safe_filename(n) for n in names))
    resolved_root = root.resolve()
    if resolved_root not in path.resolve().parents:
        raise ValueError(f"refusing to write outside {root}: {path}")
    return path
