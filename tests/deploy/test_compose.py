"""docker-compose.yml agrees with the code's configuration and keeps secrets out of the file."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from auth_svc.config import SETTINGS as AUTH_SETTINGS
from authgate_common.config import Env
from gateway.config import SETTINGS as GATEWAY_SETTINGS
from gateway.serving import GunicornSettings
from profile_svc.config import SETTINGS as PROFILE_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
MYSQL_INIT_DIR = ROOT / "deploy" / "mysql-init"

APP_SERVICES = ("auth", "profile", "gateway")
# Run to completion and exit (restart "no"): no healthcheck; others wait for their success.
ONE_SHOT_SERVICES = ("migrate",)
DEFAULT_PORTS = {"gateway": 8080, "auth": 50051, "profile": 50052}
# The variables each process reads: its settings table (the migrate job reads both services').
ENV_TABLES = {
    "auth": (AUTH_SETTINGS,),
    "profile": (PROFILE_SETTINGS,),
    "gateway": (GATEWAY_SETTINGS,),
    "migrate": (AUTH_SETTINGS, PROFILE_SETTINGS),
}
HEALTHY = {"condition": "service_healthy"}
COMPLETED = {"condition": "service_completed_successfully"}
EXPECTED_DEPENDENCIES = {
    "migrate": {"mysql": HEALTHY},
    "auth": {"mysql": HEALTHY, "migrate": COMPLETED},
    "profile": {"mysql": HEALTHY, "migrate": COMPLETED, "auth": HEALTHY},
    "gateway": {"auth": HEALTHY, "profile": HEALTHY},
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE", re.IGNORECASE)
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
REQUIRED_VARIABLE = re.compile(r"^\$\{[A-Za-z_]\w*(?::?\?[^}]*)?\}$")


def resolve_defaults(value: str) -> str:
    """The value as compose sees it with no variables set: defaults filled in, others as <NAME>."""

    def substitute(match: re.Match[str]) -> str:
        if match["op"] in {":-", "-"}:
            return match["arg"]
        return f"<{match['name']}>"

    return INTERPOLATION.sub(substitute, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict), "docker-compose.yml is not a mapping"
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose.get("services")
    assert isinstance(found, dict), "docker-compose.yml has no services"
    return found


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = (item.partition("=") for item in raw)
        return {name: value for name, _, value in pairs}
    return {str(name): "" if value is None else str(value) for name, value in raw.items()}


def env_names_read_by(service_name: str) -> set[str]:
    return {s.name for table in ENV_TABLES[service_name] for s in table.settings}


def test_compose_declares_mysql_the_three_processes_and_the_migration(
    services: dict[str, Any],
) -> None:
    assert set(services) == {"mysql", *APP_SERVICES, *ONE_SHOT_SERVICES}


def test_only_the_declared_one_shot_services_run_to_completion(services: dict[str, Any]) -> None:
    # Anything else restarts and serves, so it cannot skip the healthcheck below.
    one_shot = {name for name, service in services.items() if service.get("restart") == "no"}
    assert one_shot == set(ONE_SHOT_SERVICES)


@pytest.mark.parametrize("name", ONE_SHOT_SERVICES)
def test_one_shot_services_have_no_healthcheck_to_wait_for(
    services: dict[str, Any], name: str
) -> None:
    # A healthcheck on a process that exits would never report healthy; others wait for
    # `service_completed_successfully` instead.
    assert "healthcheck" not in services[name]


@pytest.mark.parametrize("name", ["mysql", *APP_SERVICES])
def test_every_long_running_service_has_a_healthcheck(services: dict[str, Any], name: str) -> None:
    assert services[name].get("restart") != "no"
    healthcheck = services[name].get("healthcheck") or {}
    assert not healthcheck.get("disable", False)
    test = healthcheck.get("test")
    assert isinstance(test, list), f"{name}: healthcheck.test should be an exec-form list"
    assert test[0] == "CMD"
    assert len(test) > 1


@pytest.mark.parametrize("name", [*APP_SERVICES, *ONE_SHOT_SERVICES])
def test_services_start_only_after_their_dependencies_are_healthy_or_done(
    services: dict[str, Any], name: str
) -> None:
    depends_on = services[name].get("depends_on")
    assert isinstance(depends_on, dict), f"{name}: depends_on should be a mapping with conditions"
    assert depends_on == EXPECTED_DEPENDENCIES[name]


def test_every_dependency_condition_fits_what_the_dependency_is(
    services: dict[str, Any],
) -> None:
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            expected = COMPLETED if dependency in ONE_SHOT_SERVICES else HEALTHY
            assert condition == expected, f"{name} -> {dependency}"


def test_migrate_upgrades_both_services_databases(services: dict[str, Any]) -> None:
    command = services["migrate"]["command"]
    assert command[:2] == ["sh", "-c"]
    steps = [step.strip() for step in command[2].split("&&")]
    assert steps == ["python -m auth_svc.migrate upgrade", "python -m profile_svc.migrate upgrade"]
    migrate = environment_of(services["migrate"])
    assert migrate["AUTH_DATABASE_URL"] == environment_of(services["auth"])["AUTH_DATABASE_URL"]
    assert (
        migrate["PROFILE_DATABASE_URL"]
        == environment_of(services["profile"])["PROFILE_DATABASE_URL"]
    )


@pytest.mark.parametrize("name", [*APP_SERVICES, *ONE_SHOT_SERVICES])
def test_service_environment_names_are_read_by_the_code(
    services: dict[str, Any], name: str
) -> None:
    unread = set(environment_of(services[name])) - env_names_read_by(name)
    assert not unread, f"{name} sets variables its code never reads: {sorted(unread)}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_published_ports_are_the_default_ports_on_loopback(
    services: dict[str, Any], name: str
) -> None:
    port = DEFAULT_PORTS[name]
    published = [resolve_defaults(str(entry)) for entry in services[name].get("ports", [])]
    assert published == [f"127.0.0.1:{port}:{port}"]


def test_mysql_is_not_published(services: dict[str, Any]) -> None:
    assert "ports" not in services["mysql"]


@pytest.mark.parametrize(
    ("name", "host_variable", "port_variable"),
    [
        ("auth", "AUTH_GRPC_HOST", "AUTH_GRPC_PORT"),
        ("profile", "PROFILE_GRPC_HOST", "PROFILE_GRPC_PORT"),
    ],
)
def test_grpc_services_listen_on_their_default_port_on_all_interfaces(
    services: dict[str, Any], name: str, host_variable: str, port_variable: str
) -> None:
    environment = environment_of(services[name])
    assert environment[host_variable] == "0.0.0.0"
    assert environment.get(port_variable, str(DEFAULT_PORTS[name])) == str(DEFAULT_PORTS[name])


def test_gateway_runs_under_gunicorn_with_the_config_module(services: dict[str, Any]) -> None:
    command = services["gateway"]["command"]
    assert command == [
        "gunicorn",
        "--config=python:gateway.gunicorn_conf",
        "gateway.wsgi:create_app_from_env()",
    ]


def test_gateway_binds_its_default_port_on_all_interfaces(services: dict[str, Any]) -> None:
    environment = {
        name: resolve_defaults(value) for name, value in environment_of(services["gateway"]).items()
    }
    settings = GunicornSettings.from_env(Env(environment))
    assert settings.bind == f"0.0.0.0:{DEFAULT_PORTS['gateway']}"
    assert (settings.workers, settings.threads) == (2, 8)


@pytest.mark.parametrize(
    ("name", "command"),
    [("auth", ["python", "-m", "auth_svc"]), ("profile", ["python", "-m", "profile_svc"])],
)
def test_grpc_services_run_their_module(
    services: dict[str, Any], name: str, command: list[str]
) -> None:
    assert services[name]["command"] == command


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("auth", "127.0.0.1:50051"),
        ("profile", "127.0.0.1:50052"),
        ("gateway", "http://127.0.0.1:8080/readyz"),
    ],
)
def test_healthchecks_probe_the_service_on_its_own_port(
    services: dict[str, Any], name: str, expected: str
) -> None:
    test = services[name]["healthcheck"]["test"]
    assert test[1:] == ["python", "-m", "authgate_common.healthcheck", expected]


def test_mysql_healthcheck_pings_the_server_over_tcp(services: dict[str, Any]) -> None:
    test = services["mysql"]["healthcheck"]["test"]
    assert test[1:3] == ["mysqladmin", "ping"]
    assert "--host=127.0.0.1" in test


@pytest.mark.parametrize(
    ("name", "variable", "expected"),
    [
        ("profile", "AUTH_GRPC_TARGET", f"auth:{DEFAULT_PORTS['auth']}"),
        ("gateway", "AUTH_GRPC_TARGET", f"auth:{DEFAULT_PORTS['auth']}"),
        ("gateway", "PROFILE_GRPC_TARGET", f"profile:{DEFAULT_PORTS['profile']}"),
    ],
)
def test_grpc_targets_name_a_service_and_its_port(
    services: dict[str, Any], name: str, variable: str, expected: str
) -> None:
    assert environment_of(services[name])[variable] == expected


def test_token_settings_are_the_same_for_issuer_and_verifiers(services: dict[str, Any]) -> None:
    for variable in ("JWT_ISSUER", "JWT_AUDIENCE"):
        values = {environment_of(services[name]).get(variable) for name in APP_SERVICES}
        assert len(values) == 1, f"{variable} differs between services: {values}"


def test_no_password_literal_in_the_file(services: dict[str, Any]) -> None:
    for service_name, service in services.items():
        for variable, value in environment_of(service).items():
            if SECRET_NAME.search(variable):
                assert REQUIRED_VARIABLE.match(value), (
                    f"{service_name}.{variable} must come from a required variable, with no default"
                )
            if "://" in value:
                password = make_url(resolve_defaults(value)).password
                assert password is None or re.fullmatch(r"<[A-Za-z_]\w*>", str(password)), (
                    f"{service_name}.{variable} holds a literal password"
                )
                assert not re.search(r"\$\{\w+:?-", value.split("@")[0]), (
                    f"{service_name}.{variable}: a password variable must not have a default"
                )


def test_no_literal_credentials_anywhere_in_the_text() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    # user:password@ in a URL where the password is not a ${...} reference.
    assert not re.search(r"://[^\s:/@]+:(?!\$\{)[^\s@]+@", text)
    assert "MYSQL_ALLOW_EMPTY_PASSWORD" not in text


def test_database_urls_reach_each_service_database_as_the_app_user(
    services: dict[str, Any],
) -> None:
    app_user = environment_of(services["mysql"])["MYSQL_USER"]
    for service_name, variable, database in [
        ("auth", "AUTH_DATABASE_URL", "authgate_auth"),
        ("profile", "PROFILE_DATABASE_URL", "authgate_profile"),
    ]:
        url = make_url(resolve_defaults(environment_of(services[service_name])[variable]))
        assert url.drivername == "mysql+pymysql"
        assert (url.host, url.port, url.database) == ("mysql", 3306, database)
        assert url.username == app_user
        assert url.password == "<MYSQL_PASSWORD>"


def test_mysql_init_creates_both_databases_and_grants_them_to_the_app_user(
    services: dict[str, Any],
) -> None:
    assert "./deploy/mysql-init:/docker-entrypoint-initdb.d:ro" in services["mysql"]["volumes"]
    sql = "\n".join(path.read_text(encoding="utf-8") for path in MYSQL_INIT_DIR.glob("*.sql"))
    app_user = environment_of(services["mysql"])["MYSQL_USER"]
    for database in ("authgate_auth", "authgate_profile"):
        assert re.search(rf"CREATE DATABASE IF NOT EXISTS `{database}`", sql)
        assert re.search(rf"GRANT ALL PRIVILEGES ON `{database}`\.\* TO '{app_user}'@'%'", sql)
    assert not re.search(r"IDENTIFIED\s+BY", sql, re.IGNORECASE), "no password in the init SQL"


def test_mysql_data_lives_on_the_declared_mysql_data_volume(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    assert "mysql_data" in (compose.get("volumes") or {})
    assert "mysql_data:/var/lib/mysql" in services["mysql"]["volumes"]


def test_signing_keys_live_on_the_auth_keys_volume(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    assert "auth_keys" in (compose.get("volumes") or {})
    keys_dir = environment_of(services["auth"])["AUTH_KEYS_DIR"]
    assert f"auth_keys:{keys_dir}" in services["auth"]["volumes"]
    for name in ("profile", "gateway", *ONE_SHOT_SERVICES):
        assert not services[name].get("volumes"), f"{name} needs no volume (and no keys)"


def test_app_services_share_one_image_and_run_unprivileged(services: dict[str, Any]) -> None:
    names = (*APP_SERVICES, *ONE_SHOT_SERVICES)
    images = {services[name]["image"] for name in names}
    assert len(images) == 1
    for name in names:
        assert services[name]["build"] == "."
        assert "user" not in services[name], "the image's non-root user is the one to run as"
        assert services[name].get("cap_drop") == ["ALL"]
