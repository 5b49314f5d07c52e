"""Airflow hooks: the ``amberflo_default`` and ``segment_warehouse`` connections.

Secrets live only in Airflow connections (``AIRFLOW_CONN_*`` works). The Amberflo key is registered
with Airflow's secrets masker as soon as it is read, because connections built from URIs in the
environment are not always masked by Airflow itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from amberflo_sync.client import AmberfloClient, AmberfloError, ClientSettings
from amberflo_sync.retry import RetryPolicy

if TYPE_CHECKING:
    from airflow.sdk import Connection


def _mask(secret: str | None) -> None:
    if not secret:
        return
    from airflow.sdk.log import mask_secret

    mask_secret(secret)


def settings_from_connection(
    host: str | None,
    password: str | None,
    *,
    port: int | None = None,
    schema: str | None = None,
    extra: dict[str, Any] | None = None,
) -> ClientSettings:
    """Parse connection fields into :class:`ClientSettings` (pure; inputs are not mutated).

    ``host`` is the API base URL (``https://app.amberflo.io``); without a scheme, ``extra["scheme"]``
    or the connection schema (``http``/``https``) is used, else ``https``. Extras: ``ingest_url``,
    ``batch_size``, ``connect_timeout``, ``read_timeout``, ``concurrency``, ``gzip_level``.
    """
    extras = dict(extra or {})
    if not host:
        raise AmberfloError("the Amberflo connection has no host (the API base URL, e.g. https://app.amberflo.io)")
    base = host.rstrip("/")
    if "://" not in base:
        scheme = str(extras.get("scheme") or (schema if schema in ("http", "https") else "https"))
        base = f"{scheme}://{base}"
    if port and base.count(":") < 2:
        base = f"{base}:{port}"
    kwargs: dict[str, Any] = {}
    for key, cast in (
        ("batch_size", int),
        ("connect_timeout", float),
        ("read_timeout", float),
        ("concurrency", int),
        ("gzip_level", int),
    ):
        if extras.get(key) not in (None, ""):
            kwargs[key] = cast(extras[key])
    return ClientSettings(base_url=base, api_key=password or "", ingest_url=extras.get("ingest_url") or None, **kwargs)


class AmberfloHook(BaseHook):
    """Gives a ready :class:`~amberflo_sync.client.AmberfloClient` for an Amberflo connection.

    Connection fields: host = API base URL, password = API key; extras as in
    :func:`settings_from_connection`.

    :param amberflo_conn_id: connection id (default ``amberflo_default``).
    :param retry: retry policy override (tests shorten it).
    :param overrides: :class:`ClientSettings` fields that win over the connection (e.g. ``batch_size``
        from the YAML config).
    """

    conn_name_attr = "amberflo_conn_id"
    default_conn_name = "amberflo_default"
    conn_type = "amberflo"
    hook_name = "Amberflo"

    def __init__(
        self, amberflo_conn_id: str = default_conn_name, *, retry: RetryPolicy | None = None, **overrides: Any
    ) -> None:
        super().__init__()
        self.amberflo_conn_id = amberflo_conn_id
        self.retry = retry
        self.overrides = dict(overrides)

    def get_settings(self) -> ClientSettings:
        conn: Connection = self.get_connection(self.amberflo_conn_id)
        _mask(conn.password)
        settings = settings_from_connection(
            conn.host, conn.password, port=conn.port, schema=conn.schema, extra=conn.extra_dejson
        )
        if self.overrides:
            from dataclasses import replace

            settings = replace(settings, **self.overrides)
        return settings

    def get_client(self) -> AmberfloClient:
        return AmberfloClient(self.get_settings(), retry=self.retry)

    def test_connection(self) -> tuple[bool, str]:
        """Make one authenticated, read-only call (look up a customer id that is never used)."""
        try:
            with AmberfloClient(self.get_settings(), retry=RetryPolicy(give_up_after=5)) as client:
                client.get_customer("amberflo-sync-connection-test")
        except AmberfloError as exc:
            return False, str(exc)
        return True, "Connection to Amberflo works"


class SegmentWarehouseHook(BaseHook):
    """The engine of the Segment warehouse from connection ``segment_warehouse``.

    The connection may be of type ``snowflake``, ``postgres``, ``redshift``,
    ``google_cloud_platform`` (BigQuery) or ``databricks`` — made with the provider's own form; the
    provider's hook builds the engine (:mod:`amberflo_sync.warehouses`) — or ``duckdb``, or generic
    with the full SQLAlchemy URL in its ``extra`` as ``{"sqlalchemy_url": ...}``. An extra
    ``engine_kwargs`` (``{"connect_args": {...}}``) passes through to ``create_engine``.
    """

    conn_name_attr = "warehouse_conn_id"
    default_conn_name = "segment_warehouse"
    conn_type = "generic"
    hook_name = "Segment warehouse (SQLAlchemy)"

    def __init__(self, warehouse_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.warehouse_conn_id = warehouse_conn_id

    def get_url(self) -> str:
        conn: Connection = self.get_connection(self.warehouse_conn_id)
        _mask(conn.password)
        return sqlalchemy_url(conn)

    def get_warehouse_engine(self, *, read_only: bool = False) -> Any:
        """:class:`~amberflo_sync.warehouses.WarehouseEngine` (engine + reader dialect row) of the
        connection, built by its provider's hook where it has one."""
        from amberflo_sync.warehouses import warehouse_engine

        conn: Connection = self.get_connection(self.warehouse_conn_id)
        _mask(conn.password)
        return warehouse_engine(conn, read_only=read_only)


def sqlalchemy_url(conn: Any) -> str:
    """A SQLAlchemy URL from a connection: ``extra.sqlalchemy_url`` wins; else rebuilt from its parts."""
    extra = conn.extra_dejson or {}
    if extra.get("sqlalchemy_url"):
        return str(extra["sqlalchemy_url"])
    from sqlalchemy.engine import URL

    conn_type = (conn.conn_type or "").replace("_", "+")
    if conn_type.startswith("duckdb"):
        path = conn.host or ""
        if conn.schema:
            path = f"{path}/{conn.schema}" if path else conn.schema
        return f"duckdb:///{path}"
    if conn_type in ("postgres", "postgresql"):
        conn_type = "postgresql+psycopg2"
    query = {k: str(v) for k, v in extra.items() if k not in ("sqlalchemy_url",)}
    return URL.create(
        conn_type,
        username=conn.login or None,
        password=conn.password or None,
        host=conn.host or None,
        port=conn.port or None,
        database=conn.schema or None,
        query=query,
    ).render_as_string(hide_password=False)
