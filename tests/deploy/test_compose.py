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
from gateway.config import GatewayConfig
from gateway.serving import ServingSettings
from profile_svc.config import SETTINGS as PROFILE_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PUBLISH_GRPC_FILE = ROOT / "deploy" / "compose" / "publish-grpc.yml"
MYSQL_INIT_DIR = ROOT / "deploy" / "mysql-init"

APP_SERVICES = ("auth", "profile", "gateway")
# Images of their own: the database, the rate-limit counters, the balancer.
INFRA_SERVICES = ("mysql", "redis", "nginx")
# Run to completion and exit (restart "no"): no healthcheck; others wait for their success.
ONE_SHOT_SERVICES = ("keys", "migrate")
DEFAULT_PORTS = {"gateway": 8080, "auth": 50051, "profile": 50052}
REPLICAS = {"auth": 2, "profile": 2, "gateway": 2}
# The variables each process reads: its settings table (the migrate job reads both services',
# the keys job the auth service's).
ENV_TABLES = {
    "auth": (AUTH_SETTINGS,),
    "profile": (PROFILE_SETTINGS,),
    "gateway": (GATEWAY_SETTINGS,),
    "keys": (AUTH_SETTINGS,),
    "migrate": (AUTH_SETTINGS, PROFILE_SETTINGS),
}
HEALTHY = {"condition": "service_healthy"}
COMPLETED = {"condition": "service_completed_successfully"}
EXPECTED_DEPENDENCIES = {
    "migrate": {"mysql": HEALTHY},
    # Migrations and the first signing key are done once, before any replica starts.
    "auth": {"mysql": HEALTHY, "migrate": COMPLETED, "keys": COMPLETED},
    "profile": {"mysql": HEALTHY, "migrate": COMPLETED, "auth": HEALTHY},
    "gateway": {"auth": HEALTHY, "profile": HEALTHY, "redis": HEALTHY},
    "nginx": {"gateway": HEALTHY},
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
    assert set(services) == {*INFRA_SERVICES, *APP_SERVICES, *ONE_SHOT_SERVICES}


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


@pytest.mark.parametrize("name", [*INFRA_SERVICES, *APP_SERVICES])
def test_every_long_running_service_has_a_healthcheck(services: dict[str, Any], name: str) -> None:
    assert services[name].get("restart") != "no"
    healthcheck = services[name].get("healthcheck") or {}
    assert not healthcheck.get("disable", False)
    test = healthcheck.get("test")
    assert isinstance(test, list), f"{name}: healthcheck.test should be an exec-form list"
    assert test[0] == "CMD"
    assert len(test) > 1


@pytest.mark.parametrize("name", EXPECTED_DEPENDENCIES)
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


def test_only_nginx_is_published_on_the_gateway_port_on_loopback(
    services: dict[str, Any],
) -> None:
    published = {
        name: [resolve_defaults(str(entry)) for entry in service["ports"]]
        for name, service in services.items()
        if service.get("ports")
    }
    port = DEFAULT_PORTS["gateway"]
    assert published == {"nginx": [f"127.0.0.1:{port}:{port}"]}


def test_no_grpc_port_is_published_unless_the_override_file_asks(
    services: dict[str, Any],
) -> None:
    # A direct gRPC call skips the gateway's rate limits: the services stay on the network.
    for name in ("auth", "profile"):
        assert "ports" not in services[name]
    override = yaml.safe_load(PUBLISH_GRPC_FILE.read_text(encoding="utf-8"))
    assert set(override) == {"services"}
    assert set(override["services"]) == {"auth", "profile"}
    for name, first in (("auth", 50061), ("profile", 50071)):
        assert set(override["services"][name]) == {"ports"}
        (entry,) = override["services"][name]["ports"]
        # One host port per replica, on loopback unless AUTHGATE_PUBLISH_HOST says otherwise.
        last = first + REPLICAS[name] - 1
        assert resolve_defaults(entry) == f"127.0.0.1:{first}-{last}:{DEFAULT_PORTS[name]}"


@pytest.mark.parametrize(("name", "replicas"), REPLICAS.items())
def test_each_process_runs_as_replicas(services: dict[str, Any], name: str, replicas: int) -> None:
    assert services[name]["deploy"]["replicas"] == replicas
    assert "container_name" not in services[name], "a fixed name allows one container only"


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
    settings = ServingSettings.from_env(Env(environment))
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
        # dns:/// resolves the service name to every replica; the channels balance
        # round_robin over them (authgate_common.channels).
        ("profile", "AUTH_GRPC_TARGET", f"dns:///auth:{DEFAULT_PORTS['auth']}"),
        ("gateway", "AUTH_GRPC_TARGET", f"dns:///auth:{DEFAULT_PORTS['auth']}"),
        ("gateway", "PROFILE_GRPC_TARGET", f"dns:///profile:{DEFAULT_PORTS['profile']}"),
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
    # Every auth replica reads the one key set; only the one-shot `keys` writes it.
    assert services["auth"]["volumes"] == [f"auth_keys:{keys_dir}:ro"]
    assert environment_of(services["keys"])["AUTH_KEYS_DIR"] == keys_dir
    assert services["keys"]["volumes"] == [f"auth_keys:{keys_dir}"]
    assert "python -m auth_svc.keys rotate" in services["keys"]["command"][-1]
    assert f"ls {keys_dir}/*.pem" in services["keys"]["command"][-1], "only when it has none"
    for name in ("profile", "gateway", "migrate"):
        assert not services[name].get("volumes"), f"{name} needs no volume (and no keys)"


def test_every_gateway_worker_counts_rate_limits_in_the_one_redis(
    services: dict[str, Any],
) -> None:
    environment = {
        name: resolve_defaults(value) for name, value in environment_of(services["gateway"]).items()
    }
    settings = GatewayConfig.from_env(Env(environment)).rate_limits
    url = make_url(settings.storage_uri)
    assert (url.drivername, url.host, url.port) == ("redis", "redis", 6379)
    assert url.password == "<REDIS_PASSWORD>"
    # Redis requires that same password, given as a required variable.
    assert environment_of(services["redis"])["REDISCLI_AUTH"] == (
        "${REDIS_PASSWORD:?set REDIS_PASSWORD in .env or the environment}"
    )
    assert "--requirepass" in services["redis"]["command"][-1]


def test_the_gateway_trusts_exactly_the_one_proxy_in_front(services: dict[str, Any]) -> None:
    # nginx appends the client to X-Forwarded-For (deploy/nginx/nginx.conf); one hop trusted.
    assert environment_of(services["gateway"])["GATEWAY_TRUSTED_PROXY_COUNT"] == "1"
    assert "./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in services["nginx"]["volumes"]


def test_app_services_share_one_image_and_run_unprivileged(services: dict[str, Any]) -> None:
    names = (*APP_SERVICES, *ONE_SHOT_SERVICES)
    images = {services[name]["image"] for name in names}
    assert len(images) == 1
    for name in names:
        assert services[name]["build"] == "."
        assert "user" not in services[name], "the image's non-root user is the one to run as"
        assert services[name].get("cap_drop") == ["ALL"]
