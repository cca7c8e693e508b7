"""`make cluster`: the scaled-out topology on one machine, with real components.

    nginx :8080 -> gateway :8081, :8082 (GATEWAY_SERVER: gunicorn or granian, 2 workers each)
                     |-- gRPC round_robin --> auth_svc    :50061, :50062
                     '-- gRPC round_robin --> profile_svc :50071, :50072
    every process -> one MariaDB/MySQL (the local one by default) and one Redis

The gateways (and profile_svc, for the JWKS) dial every replica themselves with gRPC's
client-side `round_robin`: there is no proxy between a gateway and the services. Both
auth replicas sign with one shared keys folder (as a mounted secret would be); the
migrations run once, here, before any replica starts. The rate limits count in Redis,
so a limit holds for the whole cluster whichever gateway and worker a request reaches.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import sqlalchemy
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from auth_svc.keys import generate_key_file, key_files
from auth_svc.migrations import AUTH_MIGRATIONS
from authgate_common.config import Env, SettingsTable, text
from authgate_common.healthcheck import check_grpc, check_http
from devstack.launcher import (
    AUTH_COMMAND,
    MULTIPROC_VARIABLE,
    PROFILE_COMMAND,
    ProcessGroup,
    StackError,
    curl_example,
    gateway_command,
    launch,
)
from gateway.config import GATEWAY_SERVER
from profile_svc.migrations import PROFILE_MIGRATIONS

NGINX_PACKAGE = "nginx-light"


@dataclass(frozen=True)
class ClusterSettings:
    """Ports and shared resources of the cluster; the defaults are DESIGN's topology."""

    state_dir: Path
    host: str = "127.0.0.1"
    balancer_port: int = 8080
    gateway_ports: tuple[int, ...] = (8081, 8082)
    auth_ports: tuple[int, ...] = (50061, 50062)
    profile_ports: tuple[int, ...] = (50071, 50072)
    auth_metrics_ports: tuple[int, ...] = (9111, 9112)
    profile_metrics_ports: tuple[int, ...] = (9121, 9122)
    gateway_workers: int = 2
    # A server URL (no database): the cluster's two databases are made on it if missing.
    mysql_server_url: str = "mysql+pymysql://root@127.0.0.1:3306/"
    auth_database: str = "authgate_cluster_auth"
    profile_database: str = "authgate_cluster_profile"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Keys of this cluster in a Redis that others may share.
    rate_limit_key_prefix: str = "authgate-cluster"
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        pairs = (
            (self.auth_ports, self.auth_metrics_ports),
            (self.profile_ports, self.profile_metrics_ports),
        )
        if any(len(ports) != len(metrics) for ports, metrics in pairs):
            raise ValueError("every replica needs a gRPC port and a metrics port")

    @property
    def url(self) -> str:
        """Where clients connect: the balancer."""
        return f"http://{self.host}:{self.balancer_port}"

    def gateway_url(self, index: int) -> str:
        return f"http://{self.host}:{self.gateway_ports[index]}"

    @property
    def keys_dir(self) -> Path:
        return self.state_dir.resolve() / "keys"

    def database_url(self, database: str) -> str:
        url = make_url(self.mysql_server_url).set(database=database)
        return url.render_as_string(hide_password=False)

    @property
    def auth_database_url(self) -> str:
        return self.database_url(self.auth_database)

    @property
    def profile_database_url(self) -> str:
        return self.database_url(self.profile_database)

    def replicas_target(self, ports: Sequence[int]) -> str:
        """A gRPC target naming every replica; the channel balances over them."""
        return "ipv4:" + ",".join(f"{self.host}:{port}" for port in ports)

    def auth_target(self, index: int) -> str:
        return f"{self.host}:{self.auth_ports[index]}"

    def profile_target(self, index: int) -> str:
        return f"{self.host}:{self.profile_ports[index]}"

    def metrics_url(self, service: str, index: int) -> str:
        ports = self.auth_metrics_ports if service == "auth" else self.profile_metrics_ports
        return f"http://{self.host}:{ports[index]}/metrics"

    def gateway_metrics_dir(self, index: int) -> Path:
        return self.state_dir.resolve() / f"gateway-{index + 1}-metrics"

    def common_environment(self) -> dict[str, str]:
        return {
            "AUTH_DATABASE_URL": self.auth_database_url,
            "PROFILE_DATABASE_URL": self.profile_database_url,
            "AUTH_KEYS_DIR": str(self.keys_dir),
            # One key for every replica: each opens the secrets the others sealed.
            "AUTH_TOTP_KEY_FILE": str(self.state_dir.resolve() / "totp.key"),
            "AUTH_GRPC_HOST": self.host,
            "PROFILE_GRPC_HOST": self.host,
            "GATEWAY_HOST": self.host,
            "AUTH_GRPC_TARGET": self.replicas_target(self.auth_ports),
            "PROFILE_GRPC_TARGET": self.replicas_target(self.profile_ports),
            "GATEWAY_WORKERS": str(self.gateway_workers),
            "GATEWAY_RATE_LIMIT_STORAGE_URI": self.redis_url,
            "GATEWAY_RATE_LIMIT_KEY_PREFIX": self.rate_limit_key_prefix,
            # nginx is the one proxy in front: the client is the address it appends.
            "GATEWAY_TRUSTED_PROXY_COUNT": "1",
            **self.extra_env,
        }


class Cluster(ProcessGroup):
    """Every process of the topology; `start()` returns once nginx answers /readyz."""

    def __init__(
        self,
        settings: ClusterSettings,
        *,
        log_dir: Path | None = None,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(log_dir=log_dir or settings.state_dir / "logs", base_env=base_env)
        self.settings = settings

    @property
    def nginx_conf(self) -> Path:
        return self.settings.state_dir.resolve() / "nginx" / "nginx.conf"

    def commands(self) -> list[tuple[str, list[str]]]:
        s = self.settings
        nginx = [
            require_nginx(),
            "-p",
            str(self.nginx_conf.parent),
            "-c",
            str(self.nginx_conf),
            "-e",
            str(self.nginx_conf.parent / "error.log"),
        ]
        return [
            *((f"auth-{i + 1}", AUTH_COMMAND) for i in range(len(s.auth_ports))),
            *((f"profile-{i + 1}", PROFILE_COMMAND) for i in range(len(s.profile_ports))),
            *(
                (name, gateway_command(self.environment_of(name)))
                for name in (f"gateway-{i + 1}" for i in range(len(s.gateway_ports)))
            ),
            ("nginx", nginx),
        ]

    def starts_with_previous(self, name: str) -> bool:
        # auth-2 beside auth-1, and so on: each kind waits for the kind before it only.
        kind, _, number = name.partition("-")
        return kind != "nginx" and number != "1"

    def environment_of(self, name: str) -> dict[str, str]:
        s = self.settings
        env = {**self._base_env, **s.common_environment()}
        env.pop(MULTIPROC_VARIABLE, None)
        kind, _, number = name.partition("-")
        index = int(number) - 1 if number else 0
        if kind == "auth":
            env["AUTH_GRPC_PORT"] = str(s.auth_ports[index])
            env["AUTH_METRICS_PORT"] = str(s.auth_metrics_ports[index])
        elif kind == "profile":
            env["PROFILE_GRPC_PORT"] = str(s.profile_ports[index])
            env["PROFILE_METRICS_PORT"] = str(s.profile_metrics_ports[index])
        elif kind == "gateway":
            env["GATEWAY_PORT"] = str(s.gateway_ports[index])
            env[MULTIPROC_VARIABLE] = str(s.gateway_metrics_dir(index))
        return env

    def readiness(self, name: str) -> Callable[[], None]:
        s = self.settings
        kind, _, number = name.partition("-")
        index = int(number) - 1 if number else 0
        if kind == "auth":
            return lambda: check_grpc(s.auth_target(index), timeout=1)
        if kind == "profile":
            return lambda: check_grpc(s.profile_target(index), timeout=1)
        if kind == "gateway":
            return lambda: check_http(f"{s.gateway_url(index)}/readyz", timeout=2)
        return lambda: check_http(f"{s.url}/readyz", timeout=2)

    def prepare(self) -> None:
        """Check Redis, make and migrate the databases once, and make the shared key."""
        s = self.settings
        s.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        require_redis(s.redis_url)
        create_databases(
            s.mysql_server_url,
            (s.auth_database, s.profile_database),
            variable=CLUSTER_MYSQL_URL.name,
        )
        for migrations, url in (
            (AUTH_MIGRATIONS, s.auth_database_url),
            (PROFILE_MIGRATIONS, s.profile_database_url),
        ):
            try:
                migrations.upgrade(url)
            except SQLAlchemyError as exc:
                raise StackError(f"migrating {make_url(url).database} failed: {exc}") from exc
        s.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not key_files(s.keys_dir):
            # Made here, once: two replicas starting together must not each make one.
            generate_key_file(s.keys_dir)
        self.nginx_conf.parent.mkdir(parents=True, exist_ok=True)
        self.nginx_conf.write_text(nginx_config(s, self.nginx_conf.parent))

    def cleanup(self) -> None:
        for index in range(len(self.settings.gateway_ports)):
            shutil.rmtree(self.settings.gateway_metrics_dir(index), ignore_errors=True)

    def banner(self) -> str:
        return (
            f"\nauthgate cluster is running (state and logs in "
            f"{self.settings.state_dir.resolve()}):\n{self.topology()}\n\n"
            f"Try it:\n{curl_example(self.settings.url)}\n\nCtrl-C stops every process.\n"
        )

    def topology(self) -> str:
        s = self.settings
        lines = [f"  nginx        {s.url}   (API docs {s.url}/docs)"]
        lines += [
            f"  gateway-{i + 1}    {s.gateway_url(i)}   ({s.gateway_workers} workers)"
            for i in range(len(s.gateway_ports))
        ]
        lines += [
            f"  auth-{i + 1}       {s.auth_target(i)}   (metrics {s.metrics_url('auth', i)})"
            for i in range(len(s.auth_ports))
        ]
        lines += [
            f"  profile-{i + 1}    {s.profile_target(i)}   (metrics {s.metrics_url('profile', i)})"
            for i in range(len(s.profile_ports))
        ]
        lines += [
            f"  database     {make_url(s.auth_database_url).render_as_string()} and "
            f"{s.profile_database}",
            f"  redis        {redis_address(s.redis_url)}",
            f"  keys         {s.keys_dir} (shared by both auth replicas)",
        ]
        return "\n".join(lines)


def nginx_config(settings: ClusterSettings, prefix: Path) -> str:
    """nginx in front of the gateways: round robin, passive health checks, retries."""
    servers = "\n".join(
        # One failure takes a gateway out for 2 s, then it is tried again.
        f"        server {settings.host}:{port} max_fails=1 fail_timeout=2s;"
        for port in settings.gateway_ports
    )
    temp = {name: prefix / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    return f"""# Written by devstack/cluster.py at each start; edits are lost.
daemon off;
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;

events {{
    worker_connections 1024;
}}

http {{
    access_log off;
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    server_tokens off;
    # The gateway refuses bodies over its own limit with a problem+json 413.
    client_max_body_size 1m;

    upstream gateways {{
{servers}
        keepalive 32;
    }}

    server {{
        listen {settings.host}:{settings.balancer_port};

        location / {{
            proxy_pass http://gateways;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            # The gateway trusts one proxy: the address appended here is the client.
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            # A gateway that refuses the connection, resets it or times out is skipped; a
            # request already sent is retried only when its method is idempotent (nginx's
            # rule). A 503 is the gateway's own answer (a service replica was down), not a
            # sign that the gateway is: it would take every gateway out at once.
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 2;
            proxy_connect_timeout 1s;
            proxy_read_timeout 30s;
        }}
    }}
}}
"""


def require_nginx() -> str:
    """nginx's path; installed from Debian's packages when missing (as `make bench` does wrk)."""
    found = _nginx_path()
    apt = shutil.which("apt-get")
    if found is None and apt is not None:
        # The package lists of a fresh machine may be missing or stale: update once.
        for attempt in ([apt, "install", "-y", NGINX_PACKAGE], [apt, "update"]):
            subprocess.run(attempt, check=False, stdout=subprocess.DEVNULL)
            if attempt[1] == "update":
                subprocess.run([apt, "install", "-y", NGINX_PACKAGE], check=False)
            found = _nginx_path()
            if found:
                break
    if found is None:
        raise StackError(f"nginx is missing and could not be installed ({NGINX_PACKAGE})")
    return found


def _nginx_path() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").is_file() else None
    )


def redis_address(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 6379


def require_redis(url: str) -> None:
    host, port = redis_address(url)
    try:
        with socket.create_connection((host, port), timeout=2):
            pass
    except OSError:
        raise StackError(
            f"Redis is not reachable at {host}:{port}; start one "
            "(redis-server --port 6379 --save '') or set CLUSTER_REDIS_URL"
        ) from None


def create_databases(server_url: str, names: Sequence[str], *, variable: str) -> None:
    """Make the databases (utf8mb4, binary collation) on the server; `variable` names the
    setting of server_url, for the error when the server is not usable."""
    engine = sqlalchemy.create_engine(server_url, connect_args={"connect_timeout": 3})
    try:
        with engine.begin() as connection:
            for name in names:
                connection.execute(
                    sqlalchemy.text(
                        f"CREATE DATABASE IF NOT EXISTS `{name}` "
                        "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                    )
                )
    except SQLAlchemyError as exc:
        where = make_url(server_url).render_as_string()
        raise StackError(
            f"the database server at {where} is not usable ({type(exc).__name__}); "
            f"set {variable} to a MySQL/MariaDB server"
        ) from exc
    finally:
        engine.dispose()


CLUSTER_MYSQL_URL = text(
    "CLUSTER_MYSQL_URL",
    ClusterSettings.mysql_server_url,
    "`make cluster`: SQLAlchemy URL of a MySQL/MariaDB server, no database; the cluster "
    f"makes `{ClusterSettings.auth_database}` and `{ClusterSettings.profile_database}` on it",
    kind="URL",
)
CLUSTER_REDIS_URL = text(
    "CLUSTER_REDIS_URL",
    ClusterSettings.redis_url,
    "`make cluster`: the Redis every gateway counts its rate limits in",
    kind="URL",
)
SETTINGS = SettingsTable.of("make cluster", (CLUSTER_MYSQL_URL, CLUSTER_REDIS_URL))


def settings_from_env(env: Env) -> ClusterSettings:
    # Read by each gateway's command (devstack.launcher.gateway_command): refused here first.
    GATEWAY_SERVER.read(env)
    return ClusterSettings(
        state_dir=Path("var/cluster"),
        mysql_server_url=CLUSTER_MYSQL_URL.read(env),
        redis_url=CLUSTER_REDIS_URL.read(env),
    )


def main() -> int:
    return launch(lambda env: Cluster(settings_from_env(env)), timeout=120)


if __name__ == "__main__":
    sys.exit(main())
