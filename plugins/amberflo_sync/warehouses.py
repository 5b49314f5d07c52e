"""The Segment warehouse engine from any Airflow SQL connection, through the provider's own hook.

A user already has a ``snowflake``/``postgres``/``redshift``/``google_cloud_platform``/``databricks``
connection made with the provider's form; the sync uses it as it is: the hook Airflow registers for
the connection type (``conn.get_hook()``, i.e. ProvidersManager) builds the engine with its own
``get_sqlalchemy_engine(engine_kwargs=…)`` (``DbApiHook``) — fields are never re-parsed here.
``engine_kwargs`` in the connection's extra (e.g. ``{"connect_args": {"protocol": "http"}}``) pass
through; ``warehouse_dialect`` picks the reader's dialect row when the connection type does not say
it (``"redshift"`` on a ``postgres`` connection to Redshift). ``duckdb`` connections and generic ones with ``extra.sqlalchemy_url`` need no provider.

Providers are optional (``requirements-<warehouse>.txt``); a missing one fails with the package to
install.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine


@dataclass(frozen=True)
class WarehouseProvider:
    """How one connection type reaches its engine.

    :param package: the pip package of the Airflow provider whose hook builds the engine.
    :param requirements: the project's pinned requirements file for it.
    :param dialect: the reader's :data:`~amberflo_sync.reader.DIALECTS` row.
    :param hook_params: constructor arguments of the hook (``conn.get_hook(hook_params=…)``).
    """

    package: str
    requirements: str
    dialect: str
    hook_params: dict[str, Any] = field(default_factory=dict)


PROVIDERS: dict[str, WarehouseProvider] = {
    "snowflake": WarehouseProvider("apache-airflow-providers-snowflake", "requirements-snowflake.txt", "snowflake"),
    # psycopg2, not the hook's default psycopg 3: the reader's COPY fast path runs on psycopg2
    "postgres": WarehouseProvider("apache-airflow-providers-postgres", "requirements-postgres.txt", "postgresql",
                                  {"sqlalchemy_scheme": "postgresql+psycopg2"}),
    "redshift": WarehouseProvider("apache-airflow-providers-amazon", "requirements-redshift.txt", "redshift"),
    "google_cloud_platform": WarehouseProvider("apache-airflow-providers-google", "requirements-bigquery.txt",
                                               "bigquery", {"use_legacy_sql": False}),
    "databricks": WarehouseProvider("apache-airflow-providers-databricks", "requirements-databricks.txt",
                                    "databricks"),
}


class WarehouseProviderMissing(RuntimeError):
    """The connection's type needs an Airflow provider that is not installed."""


@dataclass(frozen=True)
class WarehouseEngine:
    """An engine and the reader dialect row it needs (None: the engine's own dialect name)."""

    engine: Engine
    dialect: str | None


def engine_kwargs_from_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``extra["engine_kwargs"]`` (a dict or its JSON text); never a pre-ping."""
    raw = extra.get("engine_kwargs") or {}
    kwargs = dict(json.loads(raw) if isinstance(raw, str) else raw)
    if "connect_args" in kwargs:
        kwargs["connect_args"] = dict(kwargs["connect_args"])
    kwargs.pop("pool_pre_ping", None)  # a liveness SELECT 1 is a billed statement
    return kwargs


def warehouse_engine(conn: Any, *, read_only: bool = False) -> WarehouseEngine:
    """The engine of the Segment warehouse connection ``conn`` (an Airflow ``Connection``).

    :param read_only: open a DuckDB file read-only (parallel readers); other engines ignore it.
    :raises WarehouseProviderMissing: the connection type's provider is not installed.
    """
    from amberflo_sync.hooks import sqlalchemy_url
    from amberflo_sync.reader import create_engine

    extra = dict(conn.extra_dejson or {})
    kwargs = engine_kwargs_from_extra(extra)
    # e.g. "redshift" on a `postgres` connection to Redshift (same wire protocol, no COPY TO STDOUT)
    override = extra.get("warehouse_dialect") or None
    conn_type = (conn.conn_type or "").lower()
    provider = PROVIDERS.get(conn_type)
    if extra.get("sqlalchemy_url") or provider is None:
        return WarehouseEngine(create_engine(sqlalchemy_url(conn), read_only=read_only, **kwargs), override)
    if conn_type == "snowflake":
        _snowflake_sqlalchemy_compat()
    hook = _provider_hook(conn, provider)
    return WarehouseEngine(hook.get_sqlalchemy_engine(engine_kwargs=kwargs), override or provider.dialect)


def _provider_hook(conn: Any, provider: WarehouseProvider) -> Any:
    hint = (f"the segment_warehouse connection is of type {conn.conn_type!r}: install its Airflow provider with "
            f"`pip install {provider.package}` (pinned: `pip install -r {provider.requirements} -c constraints.txt`)")
    try:
        return conn.get_hook(hook_params=dict(provider.hook_params))
    except ImportError as error:
        raise WarehouseProviderMissing(f"{hint} ({error})") from None
    except Exception as error:  # Airflow: 'Unknown hook type' when no provider registers the type
        if "unknown hook type" in str(error).lower():
            raise WarehouseProviderMissing(hint) from None
        raise


def _snowflake_sqlalchemy_compat() -> None:
    """snowflake-sqlalchemy 1.11 (the last release the Snowflake provider's dependencies allow)
    subclasses ``sqlalchemy.orm.context.ORMSelectCompileState``, which SQLAlchemy 2.1 renamed to
    ``_ORMSelectCompileState``: alias it back before the dialect is imported (snowflake-sqlalchemy
    2.1 does the same lookup itself, but needs a connector the provider's Snowpark pin refuses)."""
    from sqlalchemy.orm import context

    if not hasattr(context, "ORMSelectCompileState") and hasattr(context, "_ORMSelectCompileState"):
        context.ORMSelectCompileState = context._ORMSelectCompileState
