"""The one config loader: ``config/amberflo_sync.yaml`` (path overridable by ``AMBERFLO_SYNC_CONFIG``).

Secrets never live here — the warehouse URL and the Amberflo key come from Airflow connections
(``segment_warehouse``, ``amberflo_default``). Loading fails fast with the offending key named.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

CONFIG_ENV_VAR = "AMBERFLO_SYNC_CONFIG"
#: ``<repo>/config/amberflo_sync.yaml`` — the package lives in ``<repo>/plugins/amberflo_sync``.
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "config" / "amberflo_sync.yaml"


class ConfigError(ValueError):
    """The configuration file is missing, malformed or has an invalid value."""


@dataclass(frozen=True)
class EventsConfig:
    """Which event streams the events DAG bills.

    :ivar pages: bill ``<source>.pages``.
    :ivar screens: bill ``<source>.screens``.
    :ivar tracks: bill the per-event track tables.
    :ivar include: glob patterns of track event table names to bill (empty = all).
    :ivar exclude: glob patterns of track event table names never to bill (wins over include).
    """

    pages: bool = True
    screens: bool = True
    tracks: bool = True
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def wants_event_table(self, table: str) -> bool:
        """True when the track table ``table`` passes the include/exclude lists (case-insensitive)."""
        name = table.lower()
        if any(fnmatch.fnmatchcase(name, p.lower()) for p in self.exclude):
            return False
        return not self.include or any(fnmatch.fnmatchcase(name, p.lower()) for p in self.include)


@dataclass(frozen=True)
class StateConfig:
    """Where watermarks, rejected rows and run history live.

    :ivar url: SQLAlchemy URL of a separate state database; ``None`` = the warehouse database.
    :ivar schema: schema for the state tables (ignored on SQLite, which has none).
    """

    url: str | None = None
    schema: str = "amberflo_sync"


@dataclass(frozen=True)
class CustomersConfig:
    """How customer records are written (identify and Engage syncs).

    :ivar concurrency: parallel customer API calls; 0 = the connection's ``concurrency`` (default 8).
    :ivar bulk_read_threshold: from this many changed customers on, read Amberflo's customers with one
        list call instead of one ``GET`` each.
    :ivar create_in_stripe: create new customers with ``autoCreateCustomerInStripe=true``.
    :ivar wait_minutes: how long a scheduled events run waits for the identify run of its interval.
    :ivar wait_for_paused: wait for the identify DAG even while it is paused (a run that may never
        come); by default a paused identify DAG means "bill now" and the log says so.
    """

    concurrency: int = 0
    bulk_read_threshold: int = 200
    create_in_stripe: bool = False
    wait_minutes: float = 30.0
    wait_for_paused: bool = False


@dataclass(frozen=True)
class EngageConfig:
    """Which Engage spaces the Engage DAG syncs and how.

    :ivar spaces: Engage schemas (``engage_<space>``, legacy ``personas_<space>``); empty = every such
        schema found in the warehouse.
    :ivar shapes: ``{schema: "identify" | "track"}``; a space not listed is auto-detected (a ``users``
        table → identify-shaped, else ``audience_entered``/``audience_exited``/``trait_computed``).
    :ivar include: glob patterns of audience/trait keys to sync (empty = all).
    :ivar exclude: glob patterns of keys never to sync (wins over include).
    :ivar snapshot_complete: an identify-shaped ``users`` table holds every user of the space, so a
        user missing from it, or an audience column that disappeared, ends the memberships the
        project stored as ``"true"`` (``false`` is sent). ``False`` for exports that are not full
        snapshots: absence then means nothing and only a row's own values change a membership.
    """

    spaces: tuple[str, ...] = ()
    shapes: tuple[tuple[str, str], ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    snapshot_complete: bool = True

    def shape_of(self, schema: str) -> str | None:
        return dict((k.lower(), v) for k, v in self.shapes).get(schema.lower())


@dataclass(frozen=True)
class FanOutConfig:
    """How big windows are split into slices that run as separate (mapped) tasks.

    :ivar slice_rows: a stream window holding more rows than this is split into slices.
    :ivar max_slices: at most this many slices per stream and run.
    """

    slice_rows: int = 1_000_000
    max_slices: int = 64


@dataclass(frozen=True)
class ReconciliationConfig:
    """How the reconciliation DAG compares the warehouse with Amberflo (README: "Reconciliation").

    :ivar settle_hours: an hour is settled (compared as drift) once it ended this long ago; younger
        hours are ``pending`` (Amberflo's usage may lag 24 h, de-duplication 3 h more).
    :ivar days: length of the default interval, which ends ``settle_hours`` ago.
    :ivar tolerance: relative difference of a cell's SUM and COUNT still counted as a match (0 = exact).
    :ivar max_drifted_cells: drifted cells accepted before the task fails.
    :ivar reports_dir: where the HTML/JSON reports go (``{config_dir}`` = the config's folder);
        default: ``reconciliation_reports`` next to the config file.
    :ivar drilldown_max_cells: drifted cells whose records are listed (one paged events call each).
    :ivar events_page_size: page size of ``GET /usage/events``.
    :ivar queries_per_call: usage queries per ``/usage/batch`` call (a meter needs two: SUM, COUNT).
    :ivar max_groups: ``take.limit`` of the usage queries; an answer that reaches it fails the run.
    :ivar repair_recheck_seconds: after a repair, keep re-checking this long for usage to reflect it.
    :ivar repair_recheck_every_seconds: pause between those re-checks.
    :ivar sparse_usage: read usage with ``/usage/sparse/batch`` (empty buckets left out) instead of
        ``/usage/batch``; the dense answer grows with customers × hours whether they had usage or not.
    """

    settle_hours: float = 27.0
    days: float = 7.0
    tolerance: float = 0.0
    max_drifted_cells: int = 0
    reports_dir: str | None = None
    drilldown_max_cells: int = 200
    events_page_size: int = 1000
    queries_per_call: int = 50
    max_groups: int = 100_000
    repair_recheck_seconds: float = 600.0
    repair_recheck_every_seconds: float = 30.0
    sparse_usage: bool = True


@dataclass(frozen=True)
class SyncConfig:
    """Everything the syncs read from the YAML file. See the README's configuration reference."""

    source_schemas: tuple[str, ...] = ("prod",)
    events: EventsConfig = field(default_factory=EventsConfig)
    cursor_column: str = "uuid_ts"
    overlap: dt.timedelta = dt.timedelta(hours=2)
    chunk_rows: int = 50_000
    batch_size: int = 500
    dry_run_records: int = 20
    dry_run_dir: str | None = None
    state: StateConfig = field(default_factory=StateConfig)
    customers: CustomersConfig = field(default_factory=CustomersConfig)
    engage: EngageConfig = field(default_factory=EngageConfig)
    fan_out: FanOutConfig = field(default_factory=FanOutConfig)
    reconciliation: ReconciliationConfig = field(default_factory=ReconciliationConfig)
    progress_every_seconds: float = 10.0
    max_event_age_days: float | None = 60.0
    rejected_max_attempts: int = 10

    def __post_init__(self) -> None:
        if not self.source_schemas:
            raise ConfigError("source_schemas: list at least one Segment source schema")
        if self.chunk_rows < 1:
            raise ConfigError("chunk_rows: must be a positive integer")
        if self.batch_size < 1:
            raise ConfigError("batch_size: must be a positive integer")
        if self.overlap < dt.timedelta(0):
            raise ConfigError("overlap_hours: must not be negative")


def config_path() -> Path:
    """The config file in force: ``$AMBERFLO_SYNC_CONFIG`` or the repository default."""
    return Path(os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH)


def load_config(path: str | os.PathLike[str] | None = None) -> SyncConfig:
    """Read and validate the YAML configuration.

    :param path: file to read; defaults to :func:`config_path`.
    :raises ConfigError: the file is missing or a value is invalid (the message names the key).
    """
    source = Path(path) if path is not None else config_path()
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {source} (set {CONFIG_ENV_VAR})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {source} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {source}: top level must be a mapping")
    return config_from_dict(raw, config_dir=source.resolve().parent)


def config_from_dict(raw: dict[str, Any], *, config_dir: Path | None = None) -> SyncConfig:
    """Build a :class:`SyncConfig` from a parsed mapping (unknown keys are an error: typos bill wrong)."""
    raw = dict(raw)
    known = {f.name for f in fields(SyncConfig)} | {"overlap_hours"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
    kwargs: dict[str, Any] = {}
    if "source_schemas" in raw:
        kwargs["source_schemas"] = _str_tuple(raw["source_schemas"], "source_schemas")
    if "events" in raw:
        kwargs["events"] = _events(raw["events"] or {})
    if "state" in raw:
        kwargs["state"] = _state(raw["state"] or {}, config_dir)
    if "customers" in raw:
        kwargs["customers"] = _customers(raw["customers"] or {})
    if "engage" in raw:
        kwargs["engage"] = _engage(raw["engage"] or {})
    if "fan_out" in raw:
        kwargs["fan_out"] = _fan_out(raw["fan_out"] or {})
    kwargs["reconciliation"] = _reconciliation(raw.get("reconciliation") or {}, config_dir)
    if "overlap_hours" in raw:
        kwargs["overlap"] = dt.timedelta(hours=_number(raw["overlap_hours"], "overlap_hours"))
    for key in ("chunk_rows", "batch_size", "dry_run_records", "rejected_max_attempts"):
        if key in raw:
            kwargs[key] = int(_number(raw[key], key))
    if "max_event_age_days" in raw:
        age = raw["max_event_age_days"]
        kwargs["max_event_age_days"] = None if age in (None, 0) else _number(age, "max_event_age_days")
    if "progress_every_seconds" in raw:
        kwargs["progress_every_seconds"] = float(_number(raw["progress_every_seconds"], "progress_every_seconds"))
    if raw.get("cursor_column"):
        kwargs["cursor_column"] = str(raw["cursor_column"])
    if raw.get("dry_run_dir"):
        kwargs["dry_run_dir"] = str(raw["dry_run_dir"]).replace("{config_dir}", str(config_dir or Path.cwd()))
    return SyncConfig(**kwargs)


def _events(raw: dict[str, Any]) -> EventsConfig:
    unknown = sorted(set(raw) - {f.name for f in fields(EventsConfig)})
    if unknown:
        raise ConfigError(f"unknown events key(s): {', '.join(unknown)}")
    return EventsConfig(
        pages=bool(raw.get("pages", True)),
        screens=bool(raw.get("screens", True)),
        tracks=bool(raw.get("tracks", True)),
        include=_str_tuple(raw.get("include") or [], "events.include"),
        exclude=_str_tuple(raw.get("exclude") or [], "events.exclude"),
    )


def _customers(raw: dict[str, Any]) -> CustomersConfig:
    unknown = sorted(set(raw) - {f.name for f in fields(CustomersConfig)})
    if unknown:
        raise ConfigError(f"unknown customers key(s): {', '.join(unknown)}")
    return CustomersConfig(
        concurrency=int(_number(raw.get("concurrency", 0), "customers.concurrency")),
        bulk_read_threshold=int(_number(raw.get("bulk_read_threshold", 200), "customers.bulk_read_threshold")),
        create_in_stripe=bool(raw.get("create_in_stripe", False)),
        wait_minutes=_number(raw.get("wait_minutes", 30), "customers.wait_minutes"),
        wait_for_paused=bool(raw.get("wait_for_paused", False)),
    )


def _engage(raw: dict[str, Any]) -> EngageConfig:
    unknown = sorted(set(raw) - {f.name for f in fields(EngageConfig)})
    if unknown:
        raise ConfigError(f"unknown engage key(s): {', '.join(unknown)}")
    shapes = raw.get("shapes") or {}
    if not isinstance(shapes, dict) or any(v not in ("identify", "track") for v in shapes.values()):
        raise ConfigError("engage.shapes: map each schema to 'identify' or 'track'")
    return EngageConfig(
        spaces=_str_tuple(raw.get("spaces") or [], "engage.spaces"),
        shapes=tuple(sorted((str(k), str(v)) for k, v in shapes.items())),
        include=_str_tuple(raw.get("include") or [], "engage.include"),
        exclude=_str_tuple(raw.get("exclude") or [], "engage.exclude"),
        snapshot_complete=_flag(raw.get("snapshot_complete", True), "engage.snapshot_complete"),
    )


def _flag(value: Any, name: str) -> bool:
    """A YAML boolean; anything else (``"no"`` quoted, 0) is refused rather than guessed."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    return value


def _fan_out(raw: dict[str, Any]) -> FanOutConfig:
    unknown = sorted(set(raw) - {f.name for f in fields(FanOutConfig)})
    if unknown:
        raise ConfigError(f"unknown fan_out key(s): {', '.join(unknown)}")
    slice_rows = int(_number(raw.get("slice_rows", 1_000_000), "fan_out.slice_rows"))
    max_slices = int(_number(raw.get("max_slices", 64), "fan_out.max_slices"))
    if slice_rows < 1 or max_slices < 1:
        raise ConfigError("fan_out.slice_rows and fan_out.max_slices must be positive")
    return FanOutConfig(slice_rows=slice_rows, max_slices=max_slices)


def _reconciliation(raw: dict[str, Any], config_dir: Path | None) -> ReconciliationConfig:
    unknown = sorted(set(raw) - {f.name for f in fields(ReconciliationConfig)})
    if unknown:
        raise ConfigError(f"unknown reconciliation key(s): {', '.join(unknown)}")
    defaults = ReconciliationConfig()
    values: dict[str, Any] = {}
    if "sparse_usage" in raw:
        values["sparse_usage"] = bool(raw["sparse_usage"])
    for f in fields(ReconciliationConfig):
        if f.name in ("reports_dir", "sparse_usage") or f.name not in raw:
            continue
        number = _number(raw[f.name], f"reconciliation.{f.name}")
        if number < 0:
            raise ConfigError(f"reconciliation.{f.name}: must not be negative")
        values[f.name] = int(number) if isinstance(getattr(defaults, f.name), int) else number
    for name in ("drilldown_max_cells", "events_page_size", "queries_per_call", "max_groups"):
        if name in values and values[name] < 1:
            raise ConfigError(f"reconciliation.{name}: must be a positive integer")
    folder = config_dir or Path.cwd()
    reports = str(raw.get("reports_dir") or (folder / "reconciliation_reports"))
    values["reports_dir"] = os.path.normpath(reports.replace("{config_dir}", str(folder)))
    return ReconciliationConfig(**values)


def _state(raw: dict[str, Any], config_dir: Path | None) -> StateConfig:
    unknown = sorted(set(raw) - {f.name for f in fields(StateConfig)})
    if unknown:
        raise ConfigError(f"unknown state key(s): {', '.join(unknown)}")
    url = raw.get("url")
    if isinstance(url, str):
        # ``${VAR}`` from the environment; ``{config_dir}`` = the config file's folder, so a demo
        # state file can sit next to the repository wherever it is cloned.
        url = os.path.expandvars(url).replace("{config_dir}", str(config_dir or Path.cwd()))
    return StateConfig(url=url or None, schema=str(raw.get("schema") or "amberflo_sync"))


def _str_tuple(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{key}: must be a list of non-empty strings")
    return tuple(value)


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}: must be a number, got {value!r}")
    return float(value)
