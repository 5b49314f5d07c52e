"""The Amberflo connection form, declared once.

Airflow 3.2+ reads a connection type's form declaratively from the provider info
(``conn-fields`` and ``ui-field-behaviour``, see :mod:`amberflo_sync.provider_info`) without importing
the hook; older UIs call the hook's ``get_ui_field_behaviour()`` / ``get_connection_form_widgets()``.
Both are built from the constants here, so the form cannot differ between them. The extras are the
ones :func:`amberflo_sync.hooks.settings_from_connection` reads.
"""

from __future__ import annotations

from typing import Any

CONNECTION_TYPE = "amberflo"
DEFAULT_BASE_URL = "https://app.amberflo.io"

#: Connection fields the Amberflo connection does not use.
HIDDEN_FIELDS: list[str] = ["schema", "port", "login"]
RELABELING: dict[str, str] = {"host": "API base URL", "password": "API key"}
PLACEHOLDERS: dict[str, str] = {
    "host": DEFAULT_BASE_URL,
    "password": "the API key from Amberflo's Settings → API keys",
    "ingest_url": "https://app.amberflo.io/ingest",
}

#: Extras shown as fields of their own: name → (label, JSON-schema type, default, description).
EXTRA_FIELDS: dict[str, tuple[str, str, Any, str]] = {
    "ingest_url": ("Ingestion URL", "string", None,
                   "Where meter records are posted; empty = <API base URL>/ingest."),
    "batch_size": ("Batch size", "integer", 500,
                   "Records per ingestion request (the YAML config's batch_size wins)."),
    "connect_timeout": ("Connect timeout (s)", "number", 10.0, "Seconds to establish a connection."),
    "read_timeout": ("Read timeout (s)", "number", 60.0, "Seconds to wait for Amberflo's answer."),
    "concurrency": ("Concurrency", "integer", 8,
                    "Requests in flight at once (ingestion batches, customer calls)."),
    "gzip_level": ("Gzip level", "integer", 1, "Compression level of ingestion bodies (1 = fastest)."),
}


def conn_fields() -> dict[str, dict[str, Any]]:
    """``conn-fields`` of the provider info (Airflow 3.2+ renders these without importing the hook)."""
    fields: dict[str, dict[str, Any]] = {}
    for name, (label, kind, default, description) in EXTRA_FIELDS.items():
        schema: dict[str, Any] = {"type": [kind, "null"]}
        if default is not None:
            schema["default"] = default
        fields[name] = {"label": label, "schema": schema, "description": description}
    return fields


def ui_field_behaviour_yaml() -> dict[str, Any]:
    """``ui-field-behaviour`` of the provider info (kebab-case keys, as provider.yaml spells them)."""
    return {"hidden-fields": list(HIDDEN_FIELDS), "relabeling": dict(RELABELING), "placeholders": dict(PLACEHOLDERS)}


def ui_field_behaviour() -> dict[str, Any]:
    """The same behaviour in the shape ``BaseHook.get_ui_field_behaviour()`` returns."""
    return {"hidden_fields": list(HIDDEN_FIELDS), "relabeling": dict(RELABELING), "placeholders": dict(PLACEHOLDERS)}


def form_widgets() -> dict[str, Any]:
    """WTForms fields for UIs that still call ``get_connection_form_widgets()``.

    :raises ImportError: ``wtforms``/``flask_appbuilder`` are not installed (Airflow 3 without the FAB
        provider); Airflow's provider manager expects exactly that and then uses ``conn-fields``.
    """
    from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
    from wtforms import IntegerField, StringField

    widgets: dict[str, Any] = {}
    for name, (label, kind, _default, description) in EXTRA_FIELDS.items():
        field_class = IntegerField if kind == "integer" else StringField
        widgets[name] = field_class(label, description=description, widget=BS3TextFieldWidget())
    return widgets
