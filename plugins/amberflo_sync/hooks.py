"""Airflow hooks: the ``amberflo_default`` and ``segment_warehouse`` connections.

Secrets live only in Airflow connections (``AIRFLOW_CONN_*`` works). The Amberflo key is registered
with Airflow's secrets masker as soon as it is read, because connections built from URIs in the
environment are not always masked by Airflow itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from amberflo_sync import connection_form
from amberflo_sync.client import (
    AmberfloAuthError,
    AmberfloClient,
    AmberfloError,
    AmberfloInvalidKeyError,
    AmberfloRejectedError,
    AmberfloUnavailableError,
    ClientSettings,
)
from amberflo_sync.redaction import InvalidApiKeyError, clean_api_key, redact, register_secret
from amberflo_sync.retry import RetryPolicy

if TYPE_CHECKING:
    from airflow.sdk import Connection


def _mask(secret: str | None) -> None:
    """Register the secret, and its stripped form, with Airflow's secrets masker."""
    if not secret:
        return
    register_secret(secret)
    from airflow.sdk.log import mask_secret

    mask_secret(secret)
    if secret.strip() and secret.strip() != secret:
        mask_secret(secret.strip())


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

    The API key is stripped (a key pasted into a form or read from a secrets file often ends in a
    newline, which ``requests`` would refuse in a header, echoing the key in its error).

    :raises AmberfloInvalidKeyError: whitespace or non-printable characters inside the key (the
        message does not contain the key).
    """
    try:
        api_key = clean_api_key(password)
    except InvalidApiKeyError as exc:
        raise AmberfloInvalidKeyError(str(exc)) from None
    extras = dict(extra or {})
    prefix = f"extra__{connection_form.CONNECTION_TYPE}__"  # how older connection forms stored extras
    for name, value in list(extras.items()):
        if name.startswith(prefix):
            extras.setdefault(name[len(prefix):], value)
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
    return ClientSettings(base_url=base, api_key=api_key, ingest_url=extras.get("ingest_url") or None, **kwargs)


def retry_from_connection(extra: dict[str, Any] | None) -> RetryPolicy | None:
    """The retry policy a connection asks for (extras ``retry_base_delay``, ``retry_max_delay``,
    ``retry_min_delay``, ``retry_give_up_after`` in seconds), or None for the default policy."""
    extras = dict(extra or {})
    fields = {name: float(extras[f"retry_{name}"]) for name in ("base_delay", "max_delay", "min_delay", "give_up_after")
              if extras.get(f"retry_{name}") not in (None, "")}
    return RetryPolicy(**fields) if fields else None


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
        retry = self.retry or retry_from_connection(self.get_connection(self.amberflo_conn_id).extra_dejson)
        return AmberfloClient(self.get_settings(), retry=retry)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Hidden fields, labels and placeholders of the connection form (Airflow 3.2+ reads the same
        values from the provider info's ``ui-field-behaviour`` without importing this hook)."""
        return connection_form.ui_field_behaviour()

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Form fields for the extras users set (older UIs; Airflow 3.2+ reads ``conn-fields``)."""
        return connection_form.form_widgets()

    def test_connection(self) -> tuple[bool, str]:
        """Make one cheap, authenticated, read-only call (look up a customer id that is never used)
        and say what was wrong: no or malformed key, refused key, TLS, unreachable, wrong URL.

        Called by the UI's *Test* button (``AIRFLOW__CORE__TEST_CONNECTION=Enabled``) and by
        ``airflow connections test``. One attempt only: a button must answer within seconds.
        """
        conn: Connection | None = None
        base_url = "the API base URL"
        try:
            conn = self.get_connection(self.amberflo_conn_id)
            settings = self.get_settings()
            base_url = settings.base_url
            retry = RetryPolicy(max_attempts=1, give_up_after=0)
            with AmberfloClient(settings, retry=retry) as client:
                problem = _customer_lookup_problem(client)
            if problem:
                return False, redact(f"{base_url} {problem}: is the API base URL right (e.g. "
                                     f"{connection_form.DEFAULT_BASE_URL})?", [conn.password])
        except AmberfloAuthError as exc:
            message = (f"Amberflo at {base_url} refused the API key (HTTP {exc.status}): check the API key "
                       "(the connection's password) and that it belongs to this Amberflo account.")
        except AmberfloUnavailableError as exc:
            text = str(exc)
            if "SSLError" in text or "CERTIFICATE" in text.upper():
                message = (f"TLS error talking to {base_url}: its certificate could not be verified. "
                           f"Check the API base URL and this machine's CA certificates. ({text})")
            else:
                message = (f"Cannot reach Amberflo at {base_url}: check the API base URL and that this "
                           f"machine can reach it. ({text})")
        except AmberfloRejectedError as exc:
            message = (f"{base_url} answered HTTP {exc.status} to a customer lookup: is the API base URL "
                       f"right (e.g. {connection_form.DEFAULT_BASE_URL})? ({exc.detail})")
        except (AmberfloError, ValueError) as exc:
            message = str(exc)
        else:
            return True, "Connection to Amberflo works"
        secret = conn.password if conn is not None else None
        return False, redact(message, [secret])


def _customer_lookup_problem(client: AmberfloClient) -> str | None:
    """Look up a customer id that is never used; None when the answer is what Amberflo's customers API
    gives (200 with a JSON object, or a 404 about the customer), else what was odd about it — a wrong
    base URL often answers 404 "no such endpoint" or an HTML page with 200."""
    response = client.request(
        "GET", client._url("/customers/"), params={"customerId": "amberflo-sync-connection-test"},
        ok_statuses=(200, 404),
    )
    body = (response.text or "").strip()
    if response.status_code == 404:
        return None if "customer" in body.lower() else "answered HTTP 404 to a customer lookup"
    try:
        data = response.json() if body else {}
    except ValueError:
        return "answered a customer lookup with something that is not JSON"
    return None if isinstance(data, dict) else "answered a customer lookup with JSON that is not a customer"


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
