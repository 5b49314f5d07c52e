"""The package is an Airflow provider: Admin → Connections offers "Amberflo" with labelled fields
(issue 14: nothing registered the ``amberflo`` type, so the form offered only Generic)."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

from amberflo_sync.connection_form import EXTRA_FIELDS
from amberflo_sync.hooks import AmberfloHook
from amberflo_sync.provider_info import get_provider_info

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = Path(sys.executable).with_name("airflow")


def _installed() -> None:
    try:
        importlib.metadata.version("segment-amberflo-sync")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("the project is not installed: run `bash scripts/setup.sh` (pip install --no-deps -e .)")


def test_provider_info_has_the_shape_airflow_validates():
    from airflow.providers_manager import _create_provider_info_schema_validator

    info = get_provider_info()
    _create_provider_info_schema_validator().validate(info)
    assert info["package-name"] == "segment-amberflo-sync"
    (conn,) = info["connection-types"]
    assert conn["connection-type"] == "amberflo" and conn["hook-class-name"] == "amberflo_sync.hooks.AmberfloHook"
    assert conn["hook-name"] == AmberfloHook.hook_name and AmberfloHook.conn_type == "amberflo"


def test_the_entry_point_is_declared_by_the_installed_distribution():
    _installed()
    points = importlib.metadata.entry_points(group="apache_airflow_provider")
    ours = [p for p in points if p.dist is not None and p.dist.metadata["Name"] == "segment-amberflo-sync"]
    assert [p.value for p in ours] == ["amberflo_sync.provider_info:get_provider_info"]


def test_airflow_providers_list_shows_the_provider(tmp_path):
    _installed()
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    env.pop("PYTHONPATH", None)  # the installed package, not plugins/ on the path
    out = subprocess.run([str(AIRFLOW), "providers", "list", "--output", "plain"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("segment-amberflo-sync")), None)
    assert line is not None, out.stdout
    assert "0.1.0" in line


def test_providers_manager_registers_the_amberflo_hook_and_its_form():
    _installed()
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    hook = manager.hooks["amberflo"]
    assert hook is not None and hook.hook_class_name == "amberflo_sync.hooks.AmberfloHook"
    assert hook.hook_name == "Amberflo" and hook.connection_testable
    behaviour = manager.field_behaviours["amberflo"]
    assert behaviour["relabeling"] == {"host": "API base URL", "password": "API key"}
    assert behaviour["placeholders"]["host"] == "https://app.amberflo.io"
    assert {"schema", "port", "login"} <= set(behaviour["hidden_fields"])
    widgets = {k: v for k, v in manager.connection_form_widgets.items() if k.startswith("extra__amberflo__")}
    assert sorted(widgets) == sorted(f"extra__amberflo__{name}" for name in EXTRA_FIELDS)
    assert widgets["extra__amberflo__batch_size"].field["schema"]["title"] == "Batch size"
    assert widgets["extra__amberflo__batch_size"].field["value"] == 500


def test_hook_ui_field_behaviour():
    behaviour = AmberfloHook.get_ui_field_behaviour()
    assert behaviour == {
        "hidden_fields": ["schema", "port", "login"],
        "relabeling": {"host": "API base URL", "password": "API key"},
        "placeholders": {
            "host": "https://app.amberflo.io",
            "password": "the API key from Amberflo's Settings → API keys",
            "ingest_url": "https://app.amberflo.io/ingest",
        },
    }


def test_form_extras_are_the_ones_the_connection_parser_reads():
    """Every field of the form must change the client's settings (else the form lies)."""
    from amberflo_sync.hooks import settings_from_connection

    values = {"ingest_url": "https://i.example/ingest", "batch_size": 7, "connect_timeout": 1.5,
              "read_timeout": 2.5, "concurrency": 3, "gzip_level": 6}
    assert set(values) == set(EXTRA_FIELDS)
    settings = settings_from_connection("https://app.amberflo.io", "k", extra=values)
    assert (settings.ingest_url, settings.batch_size, settings.connect_timeout, settings.read_timeout,
            settings.concurrency, settings.gzip_level) == tuple(values.values())
    prefixed = settings_from_connection("https://app.amberflo.io", "k", extra={"extra__amberflo__batch_size": "9"})
    assert prefixed.batch_size == 9


_PARSE_DAGS = ("import amberflo_sync;"
               "from airflow.dag_processing.dagbag import DagBag;"
               f"bag = DagBag({str(ROOT / 'dags')!r});"
               "assert not bag.import_errors, bag.import_errors;"
               "print(amberflo_sync.__file__, sorted(bag.dag_ids))")


@pytest.mark.parametrize("pythonpath", ["", "plugins"])
def test_the_dag_folder_loads_with_the_package_installed_and_from_plugins(tmp_path, pythonpath):
    """The DAGs parse with the installed package alone, and with ``PYTHONPATH=plugins`` as before."""
    _installed()
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = str(ROOT / pythonpath)
    out = subprocess.run([sys.executable, "-c", _PARSE_DAGS], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "segment_events_to_amberflo" in out.stdout and "engage_audiences_to_amberflo" in out.stdout


def test_a_non_editable_pip_install_is_listed_by_airflow(tmp_path):
    """``pip install .`` (a wheel, not the editable install of setup.sh) into a separate target: Airflow
    finds the provider there, and the code comes from that copy."""
    import shutil

    source = tmp_path / "src"  # a copy: setuptools leaves build/ in the tree it builds
    shutil.copytree(ROOT / "plugins" / "amberflo_sync", source / "plugins" / "amberflo_sync",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    target = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                            str(source)], capture_output=True, text=True, timeout=300)  # setuptools from PyPI
    assert build.returncode == 0, build.stderr[-3000:]
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "home"), "PYTHONPATH": str(target)}
    code = ("import amberflo_sync, importlib.metadata as m;"
            "from airflow.providers_manager import ProvidersManager;"
            "info = ProvidersManager().providers['segment-amberflo-sync'];"
            "print(amberflo_sync.__file__, info.version, m.distribution('segment-amberflo-sync').locate_file(''))")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith(str(target / "amberflo_sync")) and " 0.1.0 " in out.stdout
