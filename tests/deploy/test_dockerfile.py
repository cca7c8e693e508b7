"""The Dockerfile builds one pinned, non-root image for the three processes, with no secrets."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

Instruction = tuple[str, str]


def instructions() -> list[Instruction]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    result: list[Instruction] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    return result


def arguments_of(keyword: str) -> list[str]:
    return [arguments for found, arguments in instructions() if found == keyword]


def final_stage() -> list[Instruction]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_every_stage_builds_on_python_311_slim() -> None:
    bases = [arguments.split()[0] for arguments in arguments_of("FROM")]
    assert bases
    assert all(base == "python:3.11-slim" for base in bases)


def test_dependencies_are_installed_with_the_constraints_file() -> None:
    steps = instructions()
    installs = [
        i
        for i, (keyword, arguments) in enumerate(steps)
        if keyword == "RUN" and "pip install" in arguments
    ]
    assert len(installs) == 1, "one pip install, of the project itself"
    words = shlex.split(steps[installs[0]][1])
    assert "-c" in words
    assert words[words.index("-c") + 1] == "constraints.txt"
    assert words[-1] == ".", "the project is installed from its own source tree"
    assert "-e" not in words
    assert "--editable" not in words
    copied_before = " ".join(a for k, a in steps[: installs[0]] if k == "COPY")
    assert "constraints.txt" in copied_before
    assert "generated" in copied_before, "generated/ is the installed `authgate` package"


def test_the_image_runs_as_a_non_root_user() -> None:
    users = [arguments for keyword, arguments in final_stage() if keyword == "USER"]
    assert users, "the final stage must switch to a non-root USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_the_image_exposes_the_default_ports() -> None:
    exposed = {port for arguments in arguments_of("EXPOSE") for port in arguments.split()}
    assert exposed == {"8080", "50051", "50052", "9101", "9102"}  # gateway, gRPC, metrics


@pytest.mark.parametrize("keyword", ["ENV", "ARG"])
def test_no_secret_is_baked_into_the_image(keyword: str) -> None:
    for arguments in arguments_of(keyword):
        names = re.findall(r"([A-Za-z_]\w*)=", arguments) or arguments.split()[:1]
        for name in names:
            assert not re.search(r"PASSWORD|SECRET|TOKEN|DATABASE_URL", name, re.IGNORECASE)


def test_no_local_state_or_key_is_copied_into_the_image() -> None:
    for arguments in arguments_of("COPY"):
        sources = arguments.split()[:-1]
        for source in sources:
            assert source not in {".", "var", ".env", ".venv"}, f"COPY {source} takes too much"
            assert not source.endswith(".pem")


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build_context() -> None:
    ignored = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".env", ".venv", "var", ".git", "**/*.pem"} <= ignored


def test_image_keys_folder_is_where_compose_mounts_the_keys_volume() -> None:
    env = " ".join(arguments_of("ENV"))
    match = re.search(r"AUTH_KEYS_DIR=(\S+)", env)
    assert match, "the image sets AUTH_KEYS_DIR"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    # The one-shot `keys` writes the volume, the auth replicas read it.
    assert f"auth_keys:{match[1]}" in compose["services"]["keys"]["volumes"]
    assert f"auth_keys:{match[1]}:ro" in compose["services"]["auth"]["volumes"]
    created = " ".join(arguments_of("RUN"))
    assert re.search(rf"install -d -o authgate -g authgate -m 0700 {re.escape(match[1])}", created)


def test_default_command_is_the_gateway_under_gunicorn_with_the_config_module() -> None:
    commands = [arguments for keyword, arguments in final_stage() if keyword == "CMD"]
    assert len(commands) == 1
    assert json.loads(commands[0]) == [
        "gunicorn",
        "--config",
        "python:gateway.gunicorn_conf",
        "gateway.wsgi:create_app_from_env()",
    ]


def test_the_gateway_binds_all_interfaces_in_the_container() -> None:
    env = " ".join(arguments for keyword, arguments in final_stage() if keyword == "ENV")
    assert re.search(r"\bGATEWAY_HOST=0\.0\.0\.0\b", env)
