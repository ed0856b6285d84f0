"""Static checks of the deployment files: no container engine or cluster runs here.

- ``deploy/compose.yaml``: ``docker-compose config`` (Debian's docker-compose 1.29, which checks
  the file against the Compose schema it carries and resolves every variable, without a Docker
  daemon), then the resolved file against what the arena needs.
- ``deploy/k8s/*.yaml``: every built-in kind against the Kubernetes OpenAPI schemas, strict
  (``kubernetes-validate``, offline); KEDA's ScaledObject against a schema of the fields used
  here, then cross-checked against the worker it scales.
- ``deploy/Dockerfile``: its targets, user and lock-file install, read line by line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.conftest import require

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30.0"


def compose_binary() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    binary = compose_binary()
    require(binary is not None, "docker-compose is not installed (apt-get install docker-compose)")
    assert binary is not None
    token = tmp_path_factory.mktemp("compose") / "metrics-token"
    token.write_text("token")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ARENA_", "DOCKER_"))},
        "ARENA_ENV_FILE": "env.example",
        "ARENA_METRICS_TOKEN_FILE": str(token),
    }
    result = subprocess.run(
        [*binary, "-f", str(DEPLOY / "compose.yaml"), "config"],
        cwd=DEPLOY,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    resolved: dict[str, Any] = yaml.safe_load(result.stdout)
    return resolved


def test_compose_runs_every_part_of_the_arena(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for needed in ("postgres", "redis", "media", "web", "proxy", "beat", "prometheus"):
        assert needed in services, needed
    assert "worker-board" in services and "worker-light" in services
    commands = {name: " ".join(s.get("command", [])) for name, s in services.items()}
    assert "gunicorn" in commands["web"]
    assert sum("celery -A arena beat" in c for c in commands.values()) == 1, "one beat"
    assert "--queues leaderboard" in commands["worker-board"]


def test_compose_gives_each_gpu_worker_one_gpu_of_its_own(compose: dict[str, Any]) -> None:
    workers = {n: s for n, s in compose["services"].items() if n.startswith("worker-gpu")}
    assert len(workers) >= 2
    seen: set[str] = set()
    for name, service in workers.items():
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert len(devices) == 1 and devices[0]["capabilities"] == ["gpu"], name
        (gpu,) = devices[0]["device_ids"]
        assert gpu not in seen, f"{name} shares GPU {gpu}"
        seen.add(gpu)
        command = service["command"]
        assert command[command.index("--concurrency") + 1] == "1"
        assert service["environment"]["ARENA_WARM_MODELS"]
        assert service["image"].endswith(":cuda")


def test_compose_web_is_probed_on_healthz_and_images_go_through_the_proxy(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    assert services["web"]["environment"]["ARENA_MEDIA_SERVE"] == "accel"
    assert services["web"]["environment"]["ARENA_MEDIA_S3_ENDPOINT_URL"] == "http://media:9000"
    proxy = services["proxy"]
    assert proxy["environment"]["ARENA_MEDIA_STORE"] == "http://media:9000"


def manifests() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found.append((path.name, document))
    return found


def test_every_kubernetes_manifest_matches_the_kubernetes_schemas() -> None:
    import kubernetes_validate

    checked = 0
    for name, document in manifests():
        if document["apiVersion"].startswith("keda.sh/"):
            continue
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name}: {document['kind']} {document['metadata']['name']}: {error}")
        checked += 1
    assert checked >= 8


def test_a_broken_manifest_is_caught_by_the_same_check() -> None:
    import kubernetes_validate

    deployment = next(d for _, d in manifests() if d["kind"] == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"] = {"httpGet": {"pth": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def deployments() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in manifests() if d["kind"] == "Deployment"}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return first


def test_kubernetes_probes_use_healthz_and_readyz_and_gpu_workers_ask_for_a_gpu() -> None:
    found = deployments()
    web = container(found["arena-web"])
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # Probes go by the pod's IP as Host, which /healthz and /readyz accept (arena.health): no
    # public name to keep in step with ALLOWED_HOSTS.
    pod = found["arena-web"]["spec"]["template"]["spec"]["containers"]
    probes = [
        c[k] for c in pod for k in ("startupProbe", "livenessProbe", "readinessProbe") if k in c
    ]
    assert {p["httpGet"]["path"] for p in probes} == {"/healthz", "/readyz"}
    assert not any(p["httpGet"].get("httpHeaders") for p in probes)
    gpu = [d for name, d in found.items() if name.startswith("arena-worker-gpu")]
    assert gpu
    for deployment in gpu:
        resources = container(deployment)["resources"]
        assert resources["limits"]["nvidia.com/gpu"] == 1
    beat = found["arena-beat"]
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"]["type"] == "Recreate"
    assert found["arena-worker-board"]["spec"]["replicas"] == 1
    for deployment in found.values():
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


# The fields of KEDA's ScaledObject (keda.sh/v1alpha1) that these manifests use, as KEDA's
# documentation describes them; unknown fields are refused so a typo cannot pass.
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "pattern": "^[a-z0-9-]+$"}},
        },
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string"},
                        "kind": {"type": "string"},
                        "apiVersion": {"type": "string"},
                    },
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"const": "redis"},
                            "metadata": {
                                "type": "object",
                                "required": ["listName", "listLength"],
                                "additionalProperties": False,
                                "properties": {
                                    "address": {"type": "string", "pattern": "^[^:]+:[0-9]+$"},
                                    "databaseIndex": {"type": "string", "pattern": "^[0-9]+$"},
                                    "listName": {"type": "string", "minLength": 1},
                                    "listLength": {"type": "string", "pattern": "^[1-9][0-9]*$"},
                                    "activationListLength": {
                                        "type": "string",
                                        "pattern": "^[0-9]+$",
                                    },
                                },
                            },
                            "authenticationRef": {"type": "object"},
                        },
                    },
                },
            },
        },
    },
}


def test_the_keda_scaled_object_scales_a_gpu_pool_on_its_own_queue() -> None:
    scaled = [d for _, d in manifests() if d["kind"] == "ScaledObject"]
    assert scaled
    found = deployments()
    config = next(d for _, d in manifests() if d["metadata"]["name"] == "arena-config")
    broker = config["data"]["CELERY_BROKER_URL"]
    for document in scaled:
        jsonschema.validate(document, SCALED_OBJECT_SCHEMA)
        spec = document["spec"]
        assert spec["minReplicaCount"] <= spec["maxReplicaCount"]
        target = found[spec["scaleTargetRef"]["name"]]
        args = container(target)["args"]
        queue = args[args.index("--queues") + 1]
        for trigger in spec["triggers"]:
            metadata = trigger["metadata"]
            # The list kombu keeps for this queue: the queue name, or name + "\x06\x16" +
            # priority for the other priority levels.
            assert re.fullmatch(re.escape(queue) + r"(\x06\x16[0-9])?", metadata["listName"])
            assert broker.endswith("/" + metadata["databaseIndex"])
            assert broker.split("//")[1].split("/")[0] == metadata["address"]


def test_a_scaled_object_with_a_typo_is_refused() -> None:
    document = next(d for _, d in manifests() if d["kind"] == "ScaledObject")
    broken = yaml.safe_load(yaml.safe_dump(document))
    broken["spec"]["triggers"][0]["metadata"]["listname"] = "gpu-sdxl"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCALED_OBJECT_SCHEMA)


def test_the_dockerfile_has_cpu_and_cuda_targets_runs_unprivileged_and_installs_the_lock() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, flags=re.MULTILINE)
    assert {"cpu", "cuda"} <= set(stages)
    for target in ("cpu", "cuda"):
        body = text.split(f" AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
        users = re.findall(r"^USER\s+(\S+)", body, flags=re.MULTILINE)
        assert users and users[-1] not in {"root", "0"}, target
    assert "COPY pyproject.toml uv.lock" in text
    assert "uv sync --frozen" in text
    assert "uv lock" not in text.replace("`uv lock`", ""), "never resolve at build time"
