"""One benchmark run: per backend, start the stack, seed users, and measure every target."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import sqlalchemy
from authgate.auth.v1 import auth_pb2, auth_pb2_grpc
from authgate.profile.v1 import profile_pb2, profile_pb2_grpc
from sqlalchemy.engine import make_url

from auth_svc.config import Argon2Params
from auth_svc.keys import KeyRing
from auth_svc.migrations import AUTH_MIGRATIONS
from auth_svc.passwords import PasswordHasher
from auth_svc.tokens import AccessTokenIssuer, AccessTokenSubject
from authgate_common.channels import open_channel
from authgate_common.config import Env
from authgate_common.tokens import TokenSettings
from bench import seed
from bench.cluster_row import running_cluster
from bench.measure import Result, cpu_seconds, lua_rotating_requests, run_threads, run_wrk
from devstack.cluster import CLUSTER_REDIS_URL, create_databases
from devstack.launcher import Stack, StackError, StackSettings, reported_ports
from profile_svc.migrations import PROFILE_MIGRATIONS

PASSWORD = "bench password that is long enough"  # noqa: S105 - a benchmark user's password
REPO = Path(__file__).resolve().parent.parent
GATEWAY_WORKERS = 2
GATEWAY_THREADS = 8
HTTP_CONNECTIONS = 16  # the gateway's 2 workers x 8 threads, all busy
TOKENS = 1000  # distinct users (and tokens) the profile reads cycle through
LOGIN_USERS = 20
SETTLE_SECONDS = 1.0
SLOW_SETTLE_SECONDS = 4.0


@dataclass(frozen=True)
class Plan:
    backends: tuple[str, ...]
    seconds: float
    small_users: int
    large_users: int
    login_concurrency: int
    mysql_server_url: str


@dataclass
class Target:
    """A running stack and what the benchmark needs to reach into it."""

    gateway_url: str
    auth_target: str
    profile_target: str
    auth_database_url: str
    profile_database_url: str
    keys_dir: Path
    tokens: TokenSettings
    stack: Stack | None = None  # None for a stack run by someone else

    def pids(self, *names: str) -> list[int]:
        """Process ids of the named processes (none for a stack run by someone else)."""
        return [] if self.stack is None else [self.stack.process(n).pid for n in names]


@dataclass
class BackendResults:
    backend: str
    by_users: dict[int, dict[str, Result]] = field(default_factory=dict)
    seed_seconds: dict[int, float] = field(default_factory=dict)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- databases and stacks -------------------------------------------------------------------


@contextlib.contextmanager
def databases(backend: str, state: Path, mysql_server_url: str) -> Iterator[tuple[str, str]]:
    if backend == "sqlite":
        yield f"sqlite:///{state / 'auth.db'}", f"sqlite:///{state / 'profile.db'}"
        return
    suffix = uuid.uuid4().hex[:10]
    names = (f"authgate_bench_auth_{suffix}", f"authgate_bench_profile_{suffix}")
    server = sqlalchemy.create_engine(mysql_server_url)
    try:
        create_databases(mysql_server_url, names, variable="AUTHGATE_TEST_MYSQL_URL")
        url = make_url(mysql_server_url)
        auth_url = url.set(database=names[0]).render_as_string(hide_password=False)
        profile_url = url.set(database=names[1]).render_as_string(hide_password=False)
        # The launcher migrates SQLite files only; a server's databases are migrated on
        # purpose, as `make migrate` does.
        AUTH_MIGRATIONS.upgrade(auth_url)
        PROFILE_MIGRATIONS.upgrade(profile_url)
        yield auth_url, profile_url
    finally:
        with server.begin() as connection:
            for name in names:
                connection.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS `{name}`"))
        server.dispose()


@contextlib.contextmanager
def running_stack(state: Path, auth_db: str, profile_db: str) -> Iterator[Target]:
    settings = StackSettings(
        state_dir=state,
        gateway_port=0,  # each process picks a free port; the launcher reads which
        auth_port=0,
        profile_port=0,
        gateway_workers=GATEWAY_WORKERS,
        gateway_threads=GATEWAY_THREADS,
        auth_database_url=auth_db,
        profile_database_url=profile_db,
        # The limiter stays on (its cost is measured), but every request of the benchmark
        # comes from one address: Login's 10/minute would answer 429 to nearly all.
        extra_env={"GATEWAY_RATE_LIMITS": "Login=1000000/minute"},
    )
    stack = Stack(settings, log_dir=state / "logs")
    stack.start(timeout=120)
    settings = stack.settings  # with the bound ports
    try:
        yield Target(
            gateway_url=settings.gateway_url,
            auth_target=f"127.0.0.1:{settings.auth_port}",
            profile_target=f"127.0.0.1:{settings.profile_port}",
            auth_database_url=auth_db,
            profile_database_url=profile_db,
            keys_dir=state / "keys",
            tokens=TokenSettings.from_env(Env.from_os()),
            stack=stack,
        )
    finally:
        stack.stop()


def external_target() -> Target:
    """A stack someone else runs, described by BENCH_* variables."""
    env = os.environ
    return Target(
        gateway_url=env["BENCH_GATEWAY_URL"].rstrip("/"),
        auth_target=env["BENCH_AUTH_TARGET"],
        profile_target=env["BENCH_PROFILE_TARGET"],
        auth_database_url=env["BENCH_AUTH_DATABASE_URL"],
        profile_database_url=env["BENCH_PROFILE_DATABASE_URL"],
        keys_dir=Path(env["BENCH_KEYS_DIR"]),
        tokens=TokenSettings.from_env(Env.from_os()),
    )


@contextlib.contextmanager
def gunicorn_app(
    app: str, *, workers: int, threads: int, env: dict[str, str]
) -> Iterator[tuple[str, int]]:
    """One of bench.apps under gunicorn with the gateway's worker class; URL and master pid."""
    with tempfile.TemporaryFile() as log_file:
        yield from _serve(app, log_file, workers=workers, threads=threads, env=env)


def _serve(
    app: str, log_file: Any, *, workers: int, threads: int, env: dict[str, str]
) -> Iterator[tuple[str, int]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            "127.0.0.1:0",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--worker-class",
            "gthread",
            "--no-control-socket",
            f"bench.apps:{app}()",
        ],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        url = ""
        while True:
            log_file.seek(0)
            output = log_file.read().decode(errors="replace")
            if process.poll() is not None:
                raise RuntimeError(f"{app} exited: {output[-2000:]}")
            if not url:
                ports = [
                    p for line in output.splitlines() if (p := reported_ports("gateway", line))
                ]
                if not ports:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{app} did not say where it listens")
                    time.sleep(0.1)
                    continue
                url = f"http://127.0.0.1:{ports[0].port}"
            try:
                with urllib.request.urlopen(f"{url}/healthz-none", timeout=1):  # noqa: S310
                    pass
            except urllib.error.HTTPError:
                break  # it answers (404): up
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


# --- tokens ---------------------------------------------------------------------------------


def mint_tokens(target: Target, user_numbers: list[int]) -> list[str]:
    """Real access tokens, signed with the auth service's own key and issuer code."""
    issuer = AccessTokenIssuer(
        target.tokens, KeyRing.load(target.keys_dir, generate_if_empty=False), ttl_seconds=900
    )
    now = datetime.now(UTC)
    return [
        issuer.issue(
            AccessTokenSubject(
                user_id=seed.user_id(n), username=seed.username(n), email=None, display_name=None
            ),
            now,
        )
        for n in user_numbers
    ]


# --- the measurements -----------------------------------------------------------------------


class Bench:
    def __init__(self, plan: Plan, argon2: Argon2Params) -> None:
        self.plan = plan
        self.argon2 = argon2
        self.hasher = PasswordHasher(argon2)
        self.password_hash = self.hasher.hash(PASSWORD)

    def warm_then(
        self,
        measure: Callable[[float], Result],
        label: str,
        *,
        servers: Sequence[int] = (),
        slow: bool = False,
    ) -> Result:
        """Warm up, let what the warm-up left running finish, then measure.

        Slow targets (logins: a few per second) get twice the time, and longer pauses: a
        load tool that stops leaves its last requests' hashes running. The CPU time of
        the `servers` processes is measured over the run.
        """
        settle = SLOW_SETTLE_SECONDS if slow else SETTLE_SECONDS
        # Long enough for each gateway worker to have seen most of the 1,000 tokens once:
        # the steady state of clients that keep using their token, as real ones do for
        # its whole lifetime.
        measure(min(2.0, self.plan.seconds / 4) if slow else min(8.0, self.plan.seconds * 0.8))
        time.sleep(settle)
        cpu_before = cpu_seconds(servers)
        result = measure(self.plan.seconds * (2 if slow else 1))
        cpu_used = cpu_seconds(servers) - cpu_before
        time.sleep(settle)
        served = result.requests - result.errors
        if servers and served:
            result = dataclasses.replace(result, cpu_ms=1000 * cpu_used / served)
        log(
            f"  {label}: {result.rps:.1f} req/s, p50 {result.p50_ms:.1f} ms, "
            f"p99 {result.p99_ms:.1f} ms, errors {result.errors}, CPU/request "
            f"{result.cpu_ms or 0:.2f} ms"
        )
        return result

    def gateway_profile(self, target: Target, tokens: list[str]) -> Result:
        script = lua_rotating_requests(
            "GET", "/v1/profile", headers=[{"Authorization": f"Bearer {t}"} for t in tokens]
        )
        return self.warm_then(
            lambda s: run_wrk(target.gateway_url, script, seconds=s, connections=HTTP_CONNECTIONS),
            "gateway GET /v1/profile",
            servers=target.pids("gateway", "profile", "auth"),
        )

    def cluster_profile(self, target: Target, tokens: list[str]) -> Result | None:
        """GET /v1/profile through `make cluster`'s topology on target's databases and keys,
        with the CPU of every cluster process; None (logged) when the cluster cannot start.
        """
        script = lua_rotating_requests(
            "GET", "/v1/profile", headers=[{"Authorization": f"Bearer {t}"} for t in tokens]
        )
        cluster = running_cluster(
            auth_database_url=target.auth_database_url,
            profile_database_url=target.profile_database_url,
            keys_dir=target.keys_dir,
            redis_url=CLUSTER_REDIS_URL.read(Env.from_os()),
            gateway_workers=GATEWAY_WORKERS,
            gateway_threads=GATEWAY_THREADS,
        )
        try:
            with cluster as running:
                before = {tier: cpu_seconds(pids) for tier, pids in running.tiers.items()}
                result = self.warm_then(
                    lambda s: run_wrk(running.url, script, seconds=s, connections=HTTP_CONNECTIONS),
                    "cluster GET /v1/profile (nginx, 2 gateways, 2+2 replicas)",
                    servers=running.pids,
                )
                used = {t: cpu_seconds(p) - before[t] for t, p in running.tiers.items()}
                total = sum(used.values()) or 1.0
                # Warm-up included (the same load, so the same shares): see docs/capacity.md.
                shares = ", ".join(f"{tier} {cpu / total:.0%}" for tier, cpu in used.items())
                log(f"  cluster CPU by tier: {shares}")
                return result
        except StackError as exc:
            # Measured last: a missing nginx or Redis costs this row, not the run.
            log(f"  cluster row skipped: {exc}")
            return None

    def http_profile(self, url: str, pid: int, tokens: list[str], label: str) -> Result:
        script = lua_rotating_requests(
            "GET", "/v1/profile", headers=[{"Authorization": f"Bearer {t}"} for t in tokens]
        )
        return self.warm_then(
            lambda s: run_wrk(url, script, seconds=s, connections=HTTP_CONNECTIONS),
            label,
            servers=[pid],
        )

    def gateway_login(self, target: Target, users: list[int]) -> Result:
        script = lua_rotating_requests(
            "POST",
            "/v1/auth/login",
            headers=[{"Content-Type": "application/json"}],
            bodies=[
                json.dumps({"username": seed.username(n), "password": PASSWORD}) for n in users
            ],
        )
        return self.warm_then(
            lambda s: run_wrk(
                target.gateway_url,
                script,
                seconds=s,
                connections=self.plan.login_concurrency,
            ),
            "gateway POST /v1/auth/login",
            servers=target.pids("gateway", "profile", "auth"),
            slow=True,
        )

    def direct_profile(self, target: Target, tokens: list[str]) -> Result:
        with open_channel(target.profile_target) as channel:
            stub = profile_pb2_grpc.ProfileServiceStub(channel)
            request = profile_pb2.GetProfileRequest()
            counter = [0]

            def call(_index: int) -> bool:
                counter[0] += 1
                token = tokens[counter[0] % len(tokens)]
                try:
                    stub.GetProfile(
                        request, metadata=(("authorization", f"Bearer {token}"),), timeout=10
                    )
                except grpc.RpcError:
                    return False
                return True

            return self.warm_then(
                lambda s: run_threads(call, seconds=s, concurrency=HTTP_CONNECTIONS),
                "direct gRPC GetProfile",
                servers=target.pids("profile"),
            )

    def direct_login(self, target: Target, users: list[int]) -> Result:
        with open_channel(target.auth_target) as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            requests = [
                auth_pb2.LoginRequest(username=seed.username(n), password=PASSWORD) for n in users
            ]

            def call(index: int) -> bool:
                try:
                    stub.Login(random.choice(requests), timeout=30)  # noqa: S311
                except grpc.RpcError:
                    return False
                return True

            return self.warm_then(
                lambda s: run_threads(call, seconds=s, concurrency=self.plan.login_concurrency),
                "direct gRPC Login",
                servers=target.pids("auth"),
                slow=True,
            )

    def argon2_floor(self) -> Result:
        def call(_index: int) -> bool:
            return self.hasher.verify(self.password_hash, PASSWORD)

        return self.warm_then(
            lambda s: run_threads(call, seconds=s, concurrency=self.plan.login_concurrency),
            "argon2 verify alone",
            servers=[os.getpid()],  # the hashes run in this process
            slow=True,
        )

    def static_floor(self, tokens: list[str]) -> Result:
        with gunicorn_app(
            "static_app", workers=GATEWAY_WORKERS, threads=GATEWAY_THREADS, env={}
        ) as (url, pid):
            return self.http_profile(url, pid, tokens, "static Flask JSON route")

    def reference(self, target: Target, tokens: list[str], *, workers: int = 1) -> Result:
        env = {
            "BENCH_PROFILE_DATABASE_URL": target.profile_database_url,
            "BENCH_KEYS_DIR": str(target.keys_dir),
        }
        label = f"Flask reference, {workers} process(es)"
        app = gunicorn_app("reference_app", workers=workers, threads=GATEWAY_THREADS, env=env)
        with app as (url, pid):
            return self.http_profile(url, pid, tokens, label)

    # --- per backend ------------------------------------------------------------------------

    def measure_population(
        self, target: Target, users: int, *, floors: dict[str, Result]
    ) -> dict[str, Result]:
        sample = population_sample(users)
        tokens = mint_tokens(target, sample)
        login_users = sample[:LOGIN_USERS]
        results = {
            "gateway_profile": self.gateway_profile(target, tokens),
            "direct_profile": self.direct_profile(target, tokens),
            "reference_profile": self.reference(target, tokens),
            "reference2_profile": self.reference(target, tokens, workers=GATEWAY_WORKERS),
            "gateway_login": self.gateway_login(target, login_users),
            "direct_login": self.direct_login(target, login_users),
        }
        if "static_profile" not in floors:
            floors["static_profile"] = self.static_floor(tokens)
        if "argon2_login" not in floors:
            floors["argon2_login"] = self.argon2_floor()
        return {**results, **floors}

    def run_backend(self, backend: str, *, floors: dict[str, Result]) -> BackendResults:
        results = BackendResults(backend)
        with contextlib.ExitStack() as cleanup:
            if backend == "external":
                target = external_target()
            else:
                state = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
                auth_db, profile_db = cleanup.enter_context(
                    databases(backend, state, self.plan.mysql_server_url)
                )
                target = cleanup.enter_context(running_stack(state, auth_db, profile_db))
            seeded = seed.count_users(target.auth_database_url)
            # One population when both are the same size (a quicker run).
            for users in sorted({self.plan.small_users, self.plan.large_users}):
                if users > seeded:
                    log(f"{backend}: seeding users {seeded + 1}..{users}")
                    started = time.monotonic()
                    seed.seed(
                        target.auth_database_url,
                        target.profile_database_url,
                        first=seeded + 1,
                        last=users,
                        password_hash=self.password_hash,
                    )
                    results.seed_seconds[users] = time.monotonic() - started
                    seeded = users
                log(f"{backend}: {users:,} users")
                results.by_users[users] = self.measure_population(target, users, floors=floors)
            if backend == "mariadb":
                # The cluster needs MySQL: on the largest population, beside its one-node row.
                tokens = mint_tokens(target, population_sample(users))
                cluster = self.cluster_profile(target, tokens)
                if cluster is not None:
                    results.by_users[users]["cluster_profile"] = cluster
        return results


def population_sample(users: int) -> list[int]:
    """The users whose tokens GET /v1/profile cycles through; the same for every target."""
    rng = random.Random(users)  # noqa: S311 - a repeatable sample, not a secret
    return rng.sample(range(1, users + 1), min(TOKENS, users))


def run(plan: Plan) -> tuple[list[BackendResults], Argon2Params]:
    argon2 = Argon2Params.from_env(Env.from_os())
    bench = Bench(plan, argon2)
    floors: dict[str, Result] = {}
    results = [bench.run_backend(backend, floors=floors) for backend in plan.backends]
    return results, argon2
