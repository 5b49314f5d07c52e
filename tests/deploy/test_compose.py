"""docker-compose.yaml and docker/: checked statically, since no Docker engine runs the tests.

The compose file is read with PyYAML (merge keys and anchors resolved as Compose resolves them) and
its ``${VAR}`` references interpolated the way Compose does, once with no ``.env`` (the defaults in
the file) and once with ``docker/.env.example`` copied to ``.env``. What the containers would parse —
the connections, the sync config, the emulator's command line — is parsed here by the project's own
code (hooks, config loader, emulator CLI) and by Airflow's.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / "docker" / ".env.example"
DOCKERFILE = REPO / "docker" / "Dockerfile"

REQUIRED_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker-1",
    "airflow-worker-2",
    "postgres",
    "redis",
    "amberflo-emulator",
    "warehouse",
    "warehouse-seed",
}
#: Airflow components and the command the image's entrypoint turns into ``airflow <command>``.
AIRFLOW_COMMANDS = {
    "airflow-apiserver": ["api-server"],
    "airflow-scheduler": ["scheduler"],
    "airflow-dag-processor": ["dag-processor"],
    "airflow-triggerer": ["triggerer"],
    "airflow-worker-1": ["celery", "worker"],
    "airflow-worker-2": ["celery", "worker"],
}
AIRFLOW_SERVICES = {"airflow-init", *AIRFLOW_COMMANDS}
#: Packages of requirements.txt the image does not install: Airflow comes from the base image;
#: the rest is for tests and the benchmark only.
NOT_IN_IMAGE = {"apache-airflow", "pytest", "pytest-mock", "amberflo-metering-python", "hypothesis", "fakesnow[server]"}

# --- reading the files the way Compose does ----------------------------------------------------------

_BRACED = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")
_REFERENCE = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of a Compose ``.env`` file (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, separator, value = line.partition("=")
        assert separator, f"{path.name}: not KEY=VALUE: {line!r}"
        values[key.strip()] = value.strip()
    return values


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: ``$$`` is a literal ``$``; ``${VAR}``, ``${VAR:-default}``,
    ``${VAR-default}``, ``${VAR:?error}``, ``${VAR:+alternative}``."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        braced = _BRACED.fullmatch(match.group(0))
        assert braced, f"unsupported interpolation {match.group(0)!r} (use ${{VAR:-default}})"
        name, op, arg = braced.group("name", "op", "arg")
        value = env.get(name)
        if op in (":-", "-"):
            return arg if value is None or (op == ":-" and value == "") else value
        if op in (":?", "?"):
            if value is None or (op == ":?" and value == ""):
                raise AssertionError(f"${{{name}}} is required: {arg}")
            return value
        if op in (":+", "+"):
            return arg if value else ""
        return value or ""

    return _REFERENCE.sub(substitute, text)


def _interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, env) for key, value in node.items()}
    return node


def raw_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


ENV_SCENARIOS = {
    "without .env": {},
    "with .env from docker/.env.example": read_env_file(ENV_EXAMPLE),
}


@pytest.fixture(params=list(ENV_SCENARIOS), scope="module")
def compose(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The compose model after interpolation, once per ``.env`` scenario."""
    return _interpolate_tree(raw_compose(), ENV_SCENARIOS[request.param])


def services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def command(service: Mapping[str, Any], key: str = "command") -> list[str]:
    value = service.get(key)
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(part) for part in value]


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    """``{service: condition}`` of either form of ``depends_on``."""
    value = service.get("depends_on") or {}
    if isinstance(value, list):
        return {name: "service_started" for name in value}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in value.items()}


def mounts(service: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """``(kind, source, target)`` of every volume entry; kind is ``bind`` or ``volume``."""
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            kind, source, target = entry.get("type", "volume"), entry.get("source", ""), entry["target"]
        else:
            parts = entry.split(":")
            source, target = parts[0], parts[1]
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        yield kind, source, target


def host_path_of(service: Mapping[str, Any], container_path: str) -> Path:
    """The repository file bind-mounted at ``container_path`` (or under a mounted folder)."""
    wanted = PurePosixPath(container_path)
    for kind, source, target in mounts(service):
        if kind != "bind":
            continue
        if wanted == PurePosixPath(target):
            return (REPO / source).resolve()
        if PurePosixPath(target) in wanted.parents:
            return (REPO / source).resolve() / wanted.relative_to(target)
    raise AssertionError(f"nothing is bind-mounted at {container_path}")


# --- services and their commands ---------------------------------------------------------------------


def test_every_required_service_exists(compose):
    assert REQUIRED_SERVICES <= set(services(compose))


@pytest.mark.parametrize("name", sorted(AIRFLOW_COMMANDS))
def test_airflow_components_run_their_airflow_3_command(compose, name):
    service = services(compose)[name]
    assert command(service) == AIRFLOW_COMMANDS[name]
    assert "entrypoint" not in service  # the image's entrypoint prefixes `airflow`


def test_airflow_init_migrates_the_database_and_creates_the_admin_and_the_pool(compose):
    init = services(compose)["airflow-init"]
    assert command(init, "entrypoint") == ["/bin/bash"]
    (script_path,) = command(init)
    script = host_path_of(init, script_path).read_text(encoding="utf-8")
    assert "airflow db migrate" in script
    assert 'airflow pools set amberflo 4 "Amberflo API"' in script
    assert "AIRFLOW_ADMIN_PASSWORD" in script and "SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" in script
    for secret in ("jwt_secret", "api_secret_key", "fernet_key"):
        assert f"new_secret {secret} " in script
    assert init.get("restart") == "no"


def test_the_secrets_generated_by_init_are_what_every_component_reads(compose):
    init = services(compose)["airflow-init"]
    script = host_path_of(init, command(init)[0]).read_text(encoding="utf-8")
    secrets_dir = re.search(r"^secrets_dir=(\S+)$", script, re.MULTILINE).group(1)
    written = {(volume, target) for kind, volume, target in mounts(init) if kind == "volume"}
    assert ("airflow-secrets", secrets_dir) in written
    for name in AIRFLOW_SERVICES:
        env = environment(services(compose)[name])
        for variable, file in (
            ("AIRFLOW__API_AUTH__JWT_SECRET_CMD", "jwt_secret"),
            ("AIRFLOW__API__SECRET_KEY_CMD", "api_secret_key"),
            ("AIRFLOW__CORE__FERNET_KEY_CMD", "fernet_key"),
        ):
            assert env[variable] == f"cat {secrets_dir}/{file}", (name, variable)
            assert variable.removesuffix("_CMD") not in env  # the plain value would win over _CMD
        if name != "airflow-init":
            assert any(
                kind == "volume" and source == "airflow-secrets" and target == secrets_dir and spec_ro
                for (kind, source, target), spec_ro in _with_read_only(services(compose)[name])
            ), f"{name} must mount airflow-secrets read-only at {secrets_dir}"


def _with_read_only(service: Mapping[str, Any]) -> Iterator[tuple[tuple[str, str, str], bool]]:
    entries = service.get("volumes") or []
    for entry, mount in zip(entries, mounts(service)):
        read_only = entry.get("read_only", False) if isinstance(entry, dict) else entry.endswith(":ro")
        yield mount, read_only


def test_airflow_settings_are_shared_by_every_airflow_service(compose):
    """One ``x-airflow-common`` anchor: the components cannot drift apart."""
    envs = {name: environment(services(compose)[name]) for name in AIRFLOW_SERVICES}
    reference = envs["airflow-scheduler"]
    extras = {"DUMB_INIT_SETSID", "AIRFLOW_ADMIN_USERNAME", "AIRFLOW_ADMIN_PASSWORD"}
    for name, env in envs.items():
        assert {k: v for k, v in env.items() if k not in extras} == reference, name


def test_airflow_option_names_exist_in_airflow_3_3():
    """Every ``AIRFLOW__SECTION__KEY`` names a real option (celery's live in its provider)."""
    from airflow.configuration import conf, retrieve_configuration_description

    description = retrieve_configuration_description()
    env = environment(raw_compose()["x-airflow-common"])
    for variable in env:
        if not variable.startswith("AIRFLOW__"):
            continue
        section, _, key = variable.removeprefix("AIRFLOW__").lower().partition("__")
        if key.endswith("_cmd"):
            key = key.removesuffix("_cmd")
            assert (section, key) in conf.sensitive_config_values, f"{variable}: _CMD needs a sensitive option"
        if section == "celery":
            assert key in {"broker_url", "result_backend", "worker_concurrency"}, variable
            continue
        assert key in description[section]["options"], f"{variable}: no option [{section}] {key}"


def test_the_auth_manager_class_exists():
    import importlib

    module, _, name = environment(raw_compose()["x-airflow-common"])["AIRFLOW__CORE__AUTH_MANAGER"].rpartition(".")
    assert hasattr(importlib.import_module(module), name)


def test_executor_is_celery_with_the_redis_broker_and_a_postgres_result_backend(compose):
    defined = services(compose)
    postgres = environment(defined["postgres"])
    for name in AIRFLOW_SERVICES:
        env = environment(defined[name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        broker = make_url(env["AIRFLOW__CELERY__BROKER_URL"])
        assert broker.drivername == "redis" and broker.host == "redis" and "redis" in defined
        for key in ("AIRFLOW__CELERY__RESULT_BACKEND", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
            url = make_url(env[key].removeprefix("db+"))
            assert url.drivername.startswith("postgresql") and url.host == "postgres", key
            assert (url.username, url.password, url.database) == (
                postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]), key
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"


def test_two_celery_workers(compose):
    workers = {name for name, service in services(compose).items() if command(service)[:2] == ["celery", "worker"]}
    assert workers == {"airflow-worker-1", "airflow-worker-2"}


# --- dependencies, health, volumes, mounts -----------------------------------------------------------


def test_every_depends_on_target_is_a_defined_service(compose):
    defined = services(compose)
    for name, service in defined.items():
        for target, condition in depends_on(service).items():
            assert target in defined, f"{name} depends on undefined service {target}"
            assert condition in {"service_started", "service_healthy", "service_completed_successfully"}
            if condition == "service_healthy":
                assert "healthcheck" in defined[target], f"{name} waits for {target} to be healthy: no healthcheck"
            if condition == "service_completed_successfully":
                assert defined[target].get("restart") == "no", f"{target} is waited for as a one-shot job"


def test_airflow_components_wait_for_init_and_their_databases(compose):
    defined = services(compose)
    for name in AIRFLOW_COMMANDS:
        needs = depends_on(defined[name])
        assert needs.get("airflow-init") == "service_completed_successfully", name
        assert needs.get("postgres") == needs.get("redis") == "service_healthy", name
    assert depends_on(defined["airflow-init"]) == {"postgres": "service_healthy", "redis": "service_healthy"}
    for worker in ("airflow-worker-1", "airflow-worker-2"):
        needs = depends_on(defined[worker])
        assert needs["airflow-apiserver"] == "service_healthy"  # the Execution API
        assert needs["amberflo-emulator"] == "service_healthy"
        assert needs["warehouse-seed"] == "service_completed_successfully"
    assert depends_on(defined["warehouse-seed"]) == {"warehouse": "service_healthy"}


def test_every_long_running_service_has_a_healthcheck(compose):
    for name, service in services(compose).items():
        if service.get("restart") != "no":
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_every_named_volume_is_declared(compose):
    declared = set(compose.get("volumes") or {})
    used = {source for service in services(compose).values() for kind, source, _ in mounts(service) if kind == "volume"}
    assert used, "no named volume at all?"
    assert used <= declared, f"undeclared volumes: {sorted(used - declared)}"
    assert declared <= used, f"declared but unused volumes: {sorted(declared - used)}"


def test_every_bind_mounted_host_path_exists_in_the_repository(compose):
    for name, service in services(compose).items():
        for kind, source, target in mounts(service):
            if kind != "bind":
                continue
            path = (REPO / source).resolve()
            assert path.is_relative_to(REPO), f"{name} mounts {source} from outside the repository"
            assert path.exists(), f"{name} mounts {source}, which does not exist"


def test_build_context_and_dockerfile_exist(compose):
    built = [service for service in services(compose).values() if "build" in service]
    assert built
    for service in built:
        build = service["build"]
        context = (REPO / build["context"]).resolve()
        assert context.is_dir()
        assert (context / build.get("dockerfile", "Dockerfile")).is_file()


def test_dags_plugins_and_config_mounts_match_the_repository(compose):
    defined = services(compose)
    for name in AIRFLOW_COMMANDS:
        service = defined[name]
        env = environment(service)
        assert host_path_of(service, env["AIRFLOW__CORE__DAGS_FOLDER"]) == REPO / "dags", name
        assert host_path_of(service, env["AIRFLOW__CORE__PLUGINS_FOLDER"]) == REPO / "plugins", name
        assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] in env["PYTHONPATH"].split(":"), name
        config = host_path_of(service, env["AMBERFLO_SYNC_CONFIG"])
        assert config == REPO / "docker" / "amberflo_sync.compose.yaml", name


def test_the_mounted_sync_config_loads_and_keeps_state_in_postgresql(compose):
    from amberflo_sync.config import load_config
    from amberflo_sync.demo.event_sources import SOURCES

    scheduler = services(compose)["airflow-scheduler"]
    env = environment(scheduler)
    config = load_config(host_path_of(scheduler, env["AMBERFLO_SYNC_CONFIG"]))
    # state.url null: state lives in the warehouse (PostgreSQL), where two workers may write at once
    assert config.state.url is None and config.state.schema == "amberflo_sync"
    assert set(config.source_schemas) == {source.schema for source in SOURCES}  # what the seed writes
    # the dry-run folder is on a volume every Airflow container has
    logs = next(target for kind, source, target in mounts(scheduler) if source == "airflow-logs")
    assert PurePosixPath(logs) in PurePosixPath(config.dry_run_dir).parents


def test_the_package_default_config_path_is_the_mounted_config(compose):
    """Inside the containers the package's own default resolves to the same file."""
    env = environment(services(compose)["airflow-worker-1"])
    package_dir = PurePosixPath(env["AIRFLOW__CORE__PLUGINS_FOLDER"]) / "amberflo_sync"
    assert str(package_dir.parents[1] / "config" / "amberflo_sync.yaml") == env["AMBERFLO_SYNC_CONFIG"]


# --- connections -------------------------------------------------------------------------------------


def _connection(env: Mapping[str, str], conn_id: str):
    from airflow.sdk.definitions.connection import Connection

    value = env[f"AIRFLOW_CONN_{conn_id.upper()}"]
    json.loads(value)  # must be JSON, not a URI
    return Connection.from_json(value, conn_id=conn_id)


def test_the_amberflo_connection_points_at_the_emulator_with_its_key(compose):
    from amberflo_sync.hooks import settings_from_connection

    defined = services(compose)
    conn = _connection(environment(defined["airflow-worker-1"]), "amberflo_default")
    settings = settings_from_connection(conn.host, conn.password, port=conn.port, schema=conn.schema,
                                        extra=conn.extra_dejson)
    assert settings.base_url == "http://amberflo-emulator:8765"
    assert settings.resolved_ingest_url == "http://amberflo-emulator:8765/ingest"
    emulator = defined["amberflo-emulator"]
    assert settings.api_key and settings.api_key == environment(emulator)["AMBERFLO_EMULATOR_API_KEY"]
    port = command(emulator)[command(emulator).index("--port") + 1]
    assert f":{port}" in settings.base_url


def test_the_warehouse_connection_reads_what_the_seed_job_writes(compose):
    from amberflo_sync.hooks import sqlalchemy_url

    defined = services(compose)
    conn = _connection(environment(defined["airflow-worker-1"]), "segment_warehouse")
    url = make_url(sqlalchemy_url(conn))
    seeded = make_url(environment(defined["warehouse-seed"])["DEMO_WAREHOUSE_URL"])
    warehouse = environment(defined["warehouse"])
    assert url == seeded
    assert url.drivername == "postgresql+psycopg2" and url.host == "warehouse" and url.port == 5432
    assert (url.username, url.password, url.database) == (
        warehouse["POSTGRES_USER"], warehouse["POSTGRES_PASSWORD"], warehouse["POSTGRES_DB"])


def test_the_hooks_read_the_connections_from_the_compose_environment(compose, monkeypatch):
    """The same values through Airflow's own ``AIRFLOW_CONN_*`` lookup, as a worker does."""
    from amberflo_sync.hooks import AmberfloHook, SegmentWarehouseHook

    env = environment(services(compose)["airflow-worker-2"])
    for key in ("AIRFLOW_CONN_AMBERFLO_DEFAULT", "AIRFLOW_CONN_SEGMENT_WAREHOUSE"):
        monkeypatch.setenv(key, env[key])
    assert AmberfloHook().get_settings().base_url == "http://amberflo-emulator:8765"
    assert make_url(SegmentWarehouseHook().get_url()).host == "warehouse"


def test_real_systems_are_a_matter_of_env_values(monkeypatch):
    """Pointing at a real warehouse and real Amberflo changes only .env (docs/deployment.md)."""
    from amberflo_sync.hooks import settings_from_connection, sqlalchemy_url

    env = read_env_file(ENV_EXAMPLE) | {
        "SEGMENT_WAREHOUSE_URL": "snowflake://reader:pw@acme/SEGMENT?warehouse=BILLING",
        "AMBERFLO_API_URL": "https://app.amberflo.io",
        "AMBERFLO_INGEST_URL": "https://ingest.amberflo.io/ingest",
        "AMBERFLO_API_KEY": "real-key-from-a-secret-store",
    }
    compose = _interpolate_tree(raw_compose(), env)
    worker = environment(services(compose)["airflow-worker-1"])
    amberflo = _connection(worker, "amberflo_default")
    settings = settings_from_connection(amberflo.host, amberflo.password, extra=amberflo.extra_dejson)
    assert settings.resolved_ingest_url == "https://ingest.amberflo.io/ingest"
    assert settings.api_key == "real-key-from-a-secret-store"
    assert sqlalchemy_url(_connection(worker, "segment_warehouse")).startswith("snowflake://")
    # the real key never reaches the emulator, which keeps its own demo key
    assert "real-key-from-a-secret-store" not in json.dumps(services(compose)["amberflo-emulator"])


# --- the emulator, published ports -------------------------------------------------------------------


def test_only_the_airflow_ui_is_published_and_on_loopback_by_default(compose):
    published = {name: service["ports"] for name, service in services(compose).items() if service.get("ports")}
    assert set(published) == {"airflow-apiserver"}
    (port,) = published["airflow-apiserver"]
    host_ip, host_port, container_port = str(port).rsplit(":", 2)
    assert (host_ip, host_port, container_port) == ("127.0.0.1", "8080", "8080")


def test_the_emulator_listens_on_the_container_interface_only_by_explicit_opt_in(compose):
    from amberflo_sync.emulator.__main__ import build_parser, listen_address

    emulator = services(compose)["amberflo-emulator"]
    argv = command(emulator)
    assert argv[:3] == ["python", "-m", "amberflo_sync.emulator"]
    env = environment(emulator)
    assert env["AMBERFLO_EMULATOR_IN_CONTAINER"] == "1"
    args = build_parser().parse_args(argv[3:])
    assert args.allow_container_bind and args.host == "0.0.0.0"
    assert listen_address(args, env) == ("0.0.0.0", True)  # validated like the container would; no bind
    assert not emulator.get("ports") and "network_mode" not in emulator
    assert "--api-key" not in argv  # the key comes from the environment, never from `ps`


def test_the_seed_job_generates_the_demo_warehouse(compose):
    seed = services(compose)["warehouse-seed"]
    argv = command(seed)
    assert argv[0] == "bash"
    script = host_path_of(seed, argv[1]).read_text(encoding="utf-8")
    assert 'python -m amberflo_sync.demo.generate --url "$url"' in script
    assert 'url="${DEMO_WAREHOUSE_URL:?' in script
    assert make_url(environment(seed)["DEMO_WAREHOUSE_URL"]).drivername == "postgresql+psycopg2"
    assert seed.get("restart") == "no"
    # it creates the state tables where the DAGs keep them: same config file as the workers
    assert "state.create()" in script
    worker = services(compose)["airflow-worker-1"]
    config_path = environment(worker)["AMBERFLO_SYNC_CONFIG"]
    assert environment(seed)["AMBERFLO_SYNC_CONFIG"] == config_path
    assert host_path_of(seed, config_path) == host_path_of(worker, config_path)


def test_the_project_services_find_the_package(compose):
    for name in ("amberflo-emulator", "warehouse-seed", *AIRFLOW_COMMANDS):
        service = services(compose)[name]
        assert host_path_of(service, environment(service)["PYTHONPATH"]) == REPO / "plugins", name


# --- variables and .env.example ----------------------------------------------------------------------


def _references(text: str) -> Iterator[re.Match[str]]:
    for match in _REFERENCE.finditer(text):
        if match.group(0) != "$$":
            yield match


def test_every_variable_has_a_default_or_is_defined_in_env_example():
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    example = read_env_file(ENV_EXAMPLE)
    for match in _references(text):
        assert match.group("bare") is None, f"${match.group('bare')}: write ${{NAME:-default}} (or $$ for the shell)"
        braced = _BRACED.fullmatch(match.group(0))
        assert braced, f"unsupported interpolation {match.group(0)}"
        has_default = braced.group("op") in (":-", "-")
        assert has_default or braced.group("name") in example, f"{match.group(0)} has no default"


def test_env_example_documents_exactly_the_variables_and_their_defaults():
    """Every .env.example value is also the compose default: copying it changes nothing."""
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    defaults: dict[str, set[str]] = {}
    for match in _references(text):
        braced = _BRACED.fullmatch(match.group(0))
        defaults.setdefault(braced.group("name"), set()).add(braced.group("arg") or "")
    example = read_env_file(ENV_EXAMPLE)
    assert set(example) == set(defaults)
    for name, value in example.items():
        assert defaults[name] == {value}, name


def test_no_real_secret_in_the_example():
    example = read_env_file(ENV_EXAMPLE)
    assert example["AIRFLOW_ADMIN_PASSWORD"] == ""
    assert example["AMBERFLO_API_KEY"].startswith("demo-")
    assert example["AMBERFLO_API_KEY"] == example["AMBERFLO_EMULATOR_KEY"]


# --- the image ---------------------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in joined.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]  # type: ignore[misc]


def test_dockerfile_pip_install_references_files_it_copied_from_the_repository(compose):
    context = (REPO / services(compose)["airflow-scheduler"]["build"]["context"]).resolve()
    copied: dict[str, Path] = {}
    for instruction, arguments in _dockerfile_instructions():
        if instruction.upper() != "COPY":
            continue
        parts = [part for part in shlex.split(arguments) if not part.startswith("--")]
        *sources, destination = parts
        assert destination.endswith("/"), "COPY of several files needs a folder as destination"
        for source in sources:
            assert (context / source).is_file(), f"COPY {source}: not in the build context"
            copied[str(PurePosixPath(destination) / PurePosixPath(source).name)] = context / source
    installs = [arguments for instruction, arguments in _dockerfile_instructions()
                if instruction.upper() == "RUN" and "pip install" in arguments]
    assert installs
    for arguments in installs:
        words = shlex.split(arguments)
        files = [words[i + 1] for i, word in enumerate(words) if word in ("-r", "-c", "--requirement", "--constraint")]
        assert files, "pip install without -r/-c"
        for file in files:
            assert file in copied, f"pip install uses {file}, which the Dockerfile does not copy"
        assert '"apache-airflow==${AIRFLOW_VERSION}"' in arguments  # never replaces the base's Airflow


def test_the_build_context_ignore_file_keeps_what_the_dockerfile_copies():
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    kept = {line[1:] for line in ignore if line.startswith("!")}
    assert "*" in ignore
    for instruction, arguments in _dockerfile_instructions():
        if instruction.upper() == "COPY":
            sources = [p for p in shlex.split(arguments) if not p.startswith("--")][:-1]
            assert set(sources) <= kept


def test_base_image_is_the_airflow_version_the_project_pins(compose):
    pins = _pins(REPO / "requirements.txt")
    airflow_version = pins["apache-airflow"]
    (arg,) = [arguments for instruction, arguments in _dockerfile_instructions() if instruction == "ARG"]
    assert arg == f"AIRFLOW_IMAGE=apache/airflow:{airflow_version}-python3.11"
    build_args = services(compose)["airflow-scheduler"]["build"]["args"]
    assert build_args["AIRFLOW_IMAGE"] == f"apache/airflow:{airflow_version}-python3.11"
    assert _pins(REPO / "constraints.txt")["apache-airflow"] == airflow_version


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def _names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[=<>!~\[; ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def test_the_image_installs_every_runtime_requirement_at_the_pinned_version():
    image = _names(REPO / "docker" / "requirements-image.txt")
    runtime = set(_pins(REPO / "requirements.txt")) - NOT_IN_IMAGE
    assert runtime <= image, f"missing from docker/requirements-image.txt: {sorted(runtime - image)}"
    constraints = _pins(REPO / "constraints.txt")
    unpinned = image - set(constraints)
    # only what the base image already ships may go unpinned
    assert unpinned <= {"apache-airflow-providers-celery", "redis", "asyncpg"}, sorted(unpinned)
    assert "apache-airflow" not in image
