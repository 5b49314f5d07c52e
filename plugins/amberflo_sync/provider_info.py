"""What Airflow's provider manager learns about this package (the ``apache_airflow_provider`` entry
point declared in ``pyproject.toml``): the ``amberflo`` connection type, its hook and its form."""

from __future__ import annotations

from typing import Any

from amberflo_sync import __version__
from amberflo_sync.connection_form import CONNECTION_TYPE, conn_fields, ui_field_behaviour_yaml

#: The distribution name; Airflow requires ``package-name`` to equal it.
PACKAGE_NAME = "segment-amberflo-sync"
HOOK_CLASS_NAME = "amberflo_sync.hooks.AmberfloHook"


def get_provider_info() -> dict[str, Any]:
    """The provider info dict in the shape of Airflow's ``provider_info.schema.json``."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "Segment → Amberflo sync",
        "description": "Bills Segment warehouse data (events, identifies, Engage) into Amberflo meters "
        "and customers, exactly once. Registers the Amberflo connection type.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Amberflo",
                "external-doc-url": "https://docs.amberflo.io/",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "Amberflo", "python-modules": ["amberflo_sync.hooks"]}],
        "connection-types": [
            {
                "hook-class-name": HOOK_CLASS_NAME,
                "hook-name": "Amberflo",
                "connection-type": CONNECTION_TYPE,
                "conn-fields": conn_fields(),
                "ui-field-behaviour": ui_field_behaviour_yaml(),
            }
        ],
    }
