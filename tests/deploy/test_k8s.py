"""deploy/k8s: valid Kubernetes objects (bundled schemas, offline) that match the code.

Nothing here talks to a cluster. The manifests are validated with kubernetes-validate,
whose schemas ship inside the package, and rendered with `kubectl kustomize` when kubectl
is installed (only that test is skipped without it).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.test_compose import env_names_read_by

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "k8s"
# The oldest Kubernetes the manifests are written for (gRPC probes, autoscaling/v2,
# policy/v1 are GA there) and the newest whose schemas the package bundles.
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.latest_version())
DEPLOYMENTS = ("gateway", "auth", "profile")
GRPC_SERVICES = {"auth": 50051, "profile": 50052}
KEYS_SECRET = "authgate-signing-keys"


def manifest_files() -> list[Path]:
    return sorted(path for path in K8S_DIR.glob("*.yaml") if path.name != "kustomization.yaml")


def load_objects() -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for path in manifest_files():
        objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return objects


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return load_objects()


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def settings() -> dict[str, str]:
    """deploy/k8s/settings.env, as kustomize's configMapGenerator reads it."""
    values = {}
    for line in (K8S_DIR / "settings.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def container(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    containers = find(objects, kind, name)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def port_number(spec: dict[str, Any], port: int | str) -> int:
    """A port given by number or by the container's port name."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in spec["ports"]}
    return int(named[port])


def labels_match(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = selector.get("matchLabels") or {}
    assert "matchExpressions" not in selector, "the evaluator below reads matchLabels only"
    return all(labels.get(key) == value for key, value in wanted.items())


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any socket opened meanwhile fails the test: the schemas must come from the package."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("schema validation tried to use the network")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# --- schemas --------------------------------------------------------------------------------


def test_the_kustomization_lists_every_manifest_file() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [path.name for path in manifest_files()]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.usefixtures("no_network")
def test_every_manifest_is_valid_against_the_kubernetes_schemas(
    objects: list[dict[str, Any]], version: str
) -> None:
    for obj in objects:
        # strict: a misspelt or misplaced field is an error, not silently dropped.
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.usefixtures("no_network")
def test_the_validator_rejects_an_invalid_manifest(objects: list[dict[str, Any]]) -> None:
    broken = yaml.safe_load(yaml.safe_dump(find(objects, "Deployment", "gateway")))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pathh"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_renders_valid_objects_in_one_namespace() -> None:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(K8S_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    objects = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
    kinds = sorted({o["kind"] for o in objects})
    assert kinds == sorted(
        {
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Job",
            "Namespace",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Service",
        }
    )
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSIONS[0], strict=True)
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "authgate"
    # The generated ConfigMap's hashed name is what every pod reads.
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap"]
    assert config_map["data"] == settings()
    for obj in objects:
        if obj["kind"] in {"Deployment", "Job"}:
            (spec,) = obj["spec"]["template"]["spec"]["containers"]
            assert spec["envFrom"] == [{"configMapRef": {"name": config_map["metadata"]["name"]}}]
            assert spec["image"] == "authgate:0.1.0"


# --- what the manifests say -----------------------------------------------------------------


def test_every_setting_in_the_config_map_is_read_by_the_code() -> None:
    read = set().union(*(env_names_read_by(name) for name in ("auth", "profile", "gateway")))
    assert set(settings()) - read == set()


def test_the_config_map_holds_no_secret() -> None:
    for name, value in settings().items():
        assert not any(word in name for word in ("PASSWORD", "SECRET", "TOKEN", "PRIVATE")), name
        assert "@" not in value, f"{name} looks like a URL with credentials"


def test_no_secret_object_is_in_the_repository(objects: list[dict[str, Any]]) -> None:
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "Secret"] == []


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_each_deployment_selects_its_own_pods(objects: list[dict[str, Any]], name: str) -> None:
    deployment = find(objects, "Deployment", name)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels_match(deployment["spec"]["selector"], labels)
    assert labels["app.kubernetes.io/name"] == name
    assert deployment["spec"]["replicas"] >= 2


def test_the_gateway_probes_readyz_for_readiness_and_healthz_for_liveness(
    objects: list[dict[str, Any]],
) -> None:
    spec = container(objects, "Deployment", "gateway")
    assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert spec["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe"):
        assert port_number(spec, spec[probe]["httpGet"]["port"]) == 8080


@pytest.mark.parametrize(("name", "port"), GRPC_SERVICES.items())
def test_grpc_services_are_ready_by_grpc_health_and_alive_while_listening(
    objects: list[dict[str, Any]], name: str, port: int
) -> None:
    spec = container(objects, "Deployment", name)
    assert spec["readinessProbe"]["grpc"] == {"port": port}
    # Not grpc.health.v1: it turns NOT_SERVING while the database is down, and a liveness
    # probe on it would restart every replica during a database outage.
    assert port_number(spec, spec["livenessProbe"]["tcpSocket"]["port"]) == port


@pytest.mark.parametrize(("name", "port"), GRPC_SERVICES.items())
def test_each_grpc_service_has_a_headless_service_the_clients_balance_over(
    objects: list[dict[str, Any]], name: str, port: int
) -> None:
    service = find(objects, "Service", f"{name}-headless")
    assert service["spec"]["clusterIP"] == "None"
    pod_labels = find(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
    assert labels_match({"matchLabels": service["spec"]["selector"]}, pod_labels)
    (service_port,) = service["spec"]["ports"]
    assert service_port["port"] == port
    assert port_number(container(objects, "Deployment", name), service_port["targetPort"]) == port
    target = settings()[f"{name.upper()}_GRPC_TARGET"]
    assert target == f"dns:///{name}-headless:{port}"


def test_only_the_gateway_has_a_cluster_ip_service(objects: list[dict[str, Any]]) -> None:
    with_ip = [
        o["metadata"]["name"]
        for o in objects
        if o["kind"] == "Service" and o["spec"].get("clusterIP") != "None"
    ]
    assert with_ip == ["gateway"]
    assert not any(
        o["spec"].get("type") in {"NodePort", "LoadBalancer"}
        for o in objects
        if o["kind"] == "Service"
    )


def test_the_signing_keys_secret_is_mounted_read_only_at_auth_keys_dir_of_auth_only(
    objects: list[dict[str, Any]],
) -> None:
    for name in DEPLOYMENTS:
        pod = find(objects, "Deployment", name)["spec"]["template"]["spec"]
        volumes = {
            v["name"]: v for v in pod.get("volumes", []) if v.get("secret", {}).get("secretName")
        }
        if name != "auth":
            assert volumes == {}, f"{name} must not see the signing keys"
            continue
        (volume,) = volumes.values()
        assert volume["secret"]["secretName"] == KEYS_SECRET
        (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
        assert mount["mountPath"] == settings()["AUTH_KEYS_DIR"]
        assert mount["readOnly"] is True
        # Without subPath, an updated Secret reaches the files and auth_svc reloads them.
        assert "subPath" not in mount
        # Readable by the pod's own group only (fsGroup): nobody else.
        assert volume["secret"]["defaultMode"] & 0o007 == 0


def test_the_migration_job_upgrades_both_databases_from_the_services_secrets(
    objects: list[dict[str, Any]],
) -> None:
    spec = container(objects, "Job", "migrate")
    assert spec["command"][:2] == ["sh", "-c"]
    steps = [step.strip() for step in spec["command"][2].split("&&")]
    assert steps == ["python -m auth_svc.migrate upgrade", "python -m profile_svc.migrate upgrade"]
    job_env = {e["name"]: e["valueFrom"] for e in spec["env"]}
    for name, variable in (("auth", "AUTH_DATABASE_URL"), ("profile", "PROFILE_DATABASE_URL")):
        service_env = {
            e["name"]: e.get("valueFrom") for e in container(objects, "Deployment", name)["env"]
        }
        assert job_env[variable] == service_env[variable]
        assert "secretKeyRef" in job_env[variable]


def test_the_gateway_has_a_disruption_budget_and_an_autoscaler(
    objects: list[dict[str, Any]],
) -> None:
    pod_labels = find(objects, "Deployment", "gateway")["spec"]["template"]["metadata"]["labels"]
    budget = find(objects, "PodDisruptionBudget", "gateway")
    assert labels_match(budget["spec"]["selector"], pod_labels)
    assert budget["spec"]["minAvailable"] >= 1
    autoscaler = find(objects, "HorizontalPodAutoscaler", "gateway")
    assert autoscaler["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "gateway",
    }
    assert 2 <= autoscaler["spec"]["minReplicas"] < autoscaler["spec"]["maxReplicas"]


def test_the_gateway_counts_rate_limits_in_one_shared_storage(
    objects: list[dict[str, Any]],
) -> None:
    env = {e["name"]: e for e in container(objects, "Deployment", "gateway")["env"]}
    source = env["GATEWAY_RATE_LIMIT_STORAGE_URI"]["valueFrom"]["secretKeyRef"]
    assert source == {"name": "authgate-redis", "key": "url"}


@pytest.mark.parametrize(
    ("kind", "name"), [*(("Deployment", n) for n in DEPLOYMENTS), ("Job", "migrate")]
)
def test_every_pod_runs_unprivileged_on_a_read_only_root_with_resources(
    objects: list[dict[str, Any]], kind: str, name: str
) -> None:
    pod = find(objects, kind, name)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's user
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    spec = container(objects, kind, name)
    assert spec["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    for bound in ("requests", "limits"):
        assert set(spec["resources"][bound]) == {"cpu", "memory"}, f"{name}: {bound}"


def allowed_sources(objects: list[dict[str, Any]], target: str, port: int) -> set[str]:
    """The deployments whose pods NetworkPolicies let reach target's pods on port.

    Kubernetes semantics: a pod selected by any ingress policy takes only what some
    policy selecting it allows; policies add up.
    """
    target_pod = find(objects, "Deployment", target)["spec"]["template"]
    target_spec = target_pod["spec"]["containers"][0]
    labels = target_pod["metadata"]["labels"]
    policies = [
        o
        for o in objects
        if o["kind"] == "NetworkPolicy" and labels_match(o["spec"]["podSelector"], labels)
    ]
    assert policies, f"{target} is not isolated by any NetworkPolicy"
    allowed: set[str] = set()
    for policy in policies:
        assert "Ingress" in policy["spec"]["policyTypes"]
        for rule in policy["spec"].get("ingress", []):
            ports = {port_number(target_spec, p["port"]) for p in rule.get("ports", [])}
            if ports and port not in ports:
                continue
            if "from" not in rule:
                allowed.add("*")
                continue
            for peer in rule["from"]:
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    for source in DEPLOYMENTS:
                        pod = find(objects, "Deployment", source)["spec"]["template"]
                        if labels_match(peer["podSelector"], pod["metadata"]["labels"]):
                            allowed.add(source)
                else:
                    allowed.add("another namespace")
    return allowed


def test_only_the_gateway_and_profile_svc_reach_auth_svc(objects: list[dict[str, Any]]) -> None:
    assert allowed_sources(objects, "auth", GRPC_SERVICES["auth"]) == {"gateway", "profile"}


def test_only_the_gateway_and_auth_svc_reach_profile_svc(objects: list[dict[str, Any]]) -> None:
    # auth_svc drains the outbox of account deletions to profile_svc.
    assert allowed_sources(objects, "profile", GRPC_SERVICES["profile"]) == {"gateway", "auth"}


def test_ingress_is_denied_by_default_in_the_namespace(objects: list[dict[str, Any]]) -> None:
    deny = find(objects, "NetworkPolicy", "default-deny-ingress")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    # The gateway's HTTP port is the one way in (from the ingress controller).
    assert allowed_sources(objects, "gateway", 8080) == {"*"}
