"""Offline checks of infra/ (Kubernetes, KubeRay, Docker) and .github/workflows/retrain.yml.

Core Kubernetes objects are validated against the OpenAPI schemas that ``kubernetes-validate`` ships, in
strict mode (an unknown or misspelt field fails). KubeRay's ``ray.io/v1`` kinds have no schema there: their
required fields are checked here, and their pod templates are validated as core ``PodTemplate`` objects.
The rest checks that the pieces agree with each other (names, ports, volumes, versions, Secrets) and that
no credential is written in the repository.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
DOCKERFILE = INFRA / "docker" / "Dockerfile"
WORKSPACE_SCRIPT = INFRA / "docker" / "genfoundry-workspace.sh"
WORKFLOW = ROOT / ".github" / "workflows" / "retrain.yml"
MANIFESTS = sorted((INFRA / "k8s").glob("*.yaml")) + sorted((INFRA / "kuberay").glob("*.yaml"))

# The oldest Kubernetes minor the manifests claim to support, and the newest schema set installed.
K8S_VERSIONS = sorted({"1.30", ".".join(kubernetes_validate.latest_version().split(".")[:2])})
SHARED_CLAIM, SHARED_MOUNT = "genfoundry-shared", "/mnt/shared"
# Environment variables whose values are credentials (or may embed one, like a git URL with a token).
SENSITIVE_ENV = re.compile(r"PASSWORD|TOKEN|SECRET|ACCESS_KEY|USER|GIT_URL")
SENSITIVE_KEY = re.compile(r"password|passwd|token|secret|api[_-]?key", re.IGNORECASE)


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


DOCS = [(path, doc) for path in MANIFESTS for doc in _docs(path)]
CORE_DOCS = [(path, doc) for path, doc in DOCS if not doc["apiVersion"].startswith("ray.io/")]


def _one(kind: str) -> dict[str, Any]:
    (doc,) = [doc for _, doc in DOCS if doc["kind"] == kind]
    return doc


def _doc_id(item: tuple[Path, dict[str, Any]]) -> str:
    path, doc = item
    return f"{path.name}:{doc['kind']}/{doc['metadata']['name']}"


def _ray_groups(cluster_spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "head", cluster_spec["headGroupSpec"]
    for group in cluster_spec["workerGroupSpecs"]:
        yield group["groupName"], group


def _ray_cluster_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]


def _pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod spec) for every pod the manifests make."""
    for _, doc in DOCS:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in ("Deployment", "StatefulSet"):
            yield where, doc["spec"]["template"]["spec"]
        elif doc["kind"] == "CronJob":
            yield where, doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif doc["kind"] in ("RayCluster", "RayJob"):
            for group, spec in _ray_groups(_ray_cluster_spec(doc)):
                yield f"{where}[{group}]", spec["template"]["spec"]


def _containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return pod_spec.get("initContainers", []) + pod_spec["containers"]


def _pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {var["name"]: var for var in container.get("env", [])}


# --- core kinds: the Kubernetes OpenAPI schemas -------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("item", CORE_DOCS, ids=_doc_id)
def test_core_object_matches_kubernetes_schema(item: tuple[Path, dict[str, Any]], version: str) -> None:
    _, doc = item
    assert kubernetes_validate.validate(doc, version, strict=True) == version


def test_core_kinds_are_all_covered() -> None:
    kinds = {doc["kind"] for _, doc in CORE_DOCS}
    assert {"CronJob", "Deployment", "Service", "StatefulSet", "PersistentVolumeClaim"} <= kinds


def test_strict_validation_rejects_a_misspelt_field() -> None:
    cronjob = yaml.safe_load(yaml.safe_dump(_one("CronJob")))
    cronjob["spec"]["concurrencyPolcy"] = cronjob["spec"].pop("concurrencyPolicy")
    with pytest.raises(kubernetes_validate.ValidationError, match="concurrencyPolcy"):
        kubernetes_validate.validate(cronjob, K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("kind", ["RayCluster", "RayJob"])
def test_ray_pod_templates_match_kubernetes_schema(kind: str, version: str) -> None:
    for group, spec in _ray_groups(_ray_cluster_spec(_one(kind))):
        pod_template = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": f"{kind.lower()}-{group}"},
            "template": spec["template"],
        }
        assert kubernetes_validate.validate(pod_template, version, strict=True) == version


# --- KubeRay kinds: required fields of ray.io/v1 ------------------------------------------------------


def _check_ray_cluster_spec(spec: dict[str, Any]) -> None:
    assert isinstance(spec["rayVersion"], str)
    groups = list(_ray_groups(spec))
    assert len(groups) >= 2, "expected a head group and at least one worker group"
    names = [name for name, _ in groups[1:]]
    assert len(set(names)) == len(names), f"expected unique worker groupName, got {names}"
    for name, group in groups:
        params = group["rayStartParams"]
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in params.items()), (
            f"{name}: expected rayStartParams to map strings to strings, got {params}"
        )
        containers = group["template"]["spec"]["containers"]
        assert containers and all(c["name"] and c["image"] for c in containers)
        if name != "head":
            assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_raycluster_has_head_cpu_and_gpu_groups() -> None:
    cluster = _one("RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    _check_ray_cluster_spec(cluster["spec"])
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    gpus = {
        name: group["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0)
        for name, group in _ray_groups(cluster["spec"])
    }
    assert gpus["cpu"] == 0 and gpus["gpu"] >= 1
    assert cluster["spec"]["workerGroupSpecs"][-1]["minReplicas"] == 0, "expected the GPU group optional"


def test_rayjob_runs_the_pipeline_and_cleans_up() -> None:
    job = _one("RayJob")
    assert job["apiVersion"] == "ray.io/v1"
    _check_ray_cluster_spec(job["spec"]["rayClusterSpec"])
    assert "dvc repro" in job["spec"]["entrypoint"]
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    assert job["spec"]["ttlSecondsAfterFinished"] >= 0
    runtime_env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    assert runtime_env["env_vars"]["MLFLOW_TRACKING_URI"].startswith("http")
    assert not [name for name in runtime_env["env_vars"] if SENSITIVE_ENV.search(name)], (
        "credentials belong in Secrets, not in the runtime env the dashboard shows"
    )


def test_ray_version_matches_the_image() -> None:
    dockerfile = DOCKERFILE.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", dockerfile, flags=re.MULTILINE))
    # ray[default]: the dashboard and Jobs API, which KubeRay's probes and `ray job submit` need
    assert re.search(r'"ray\[(\w+,)*default(,\w+)*\]==\$\{RAY_VERSION\}"', dockerfile)
    for kind in ("RayCluster", "RayJob"):
        assert _ray_cluster_spec(_one(kind))["rayVersion"] == args["RAY_VERSION"]


# --- the pieces agree ---------------------------------------------------------------------------------


def test_services_select_their_pods_and_ports() -> None:
    workloads = [doc for _, doc in DOCS if doc["kind"] in ("Deployment", "StatefulSet")]
    services = {doc["metadata"]["name"]: doc for _, doc in DOCS if doc["kind"] == "Service"}
    for name, service in services.items():
        selector = service["spec"]["selector"].items()
        pods = [w["spec"]["template"] for w in workloads if selector <= _pod_labels(w).items()]
        assert len(pods) == 1, f"{name}: expected to select one workload, got {len(pods)}"
        port_names = {p["name"] for c in pods[0]["spec"]["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, f"{name}: expected a container port {port['targetPort']}"
    for workload in workloads:
        assert workload["spec"]["selector"]["matchLabels"].items() <= _pod_labels(workload).items()
        if workload["kind"] == "StatefulSet":
            assert workload["spec"]["serviceName"] in services


def test_mlflow_uri_points_at_the_mlflow_service() -> None:
    (service,) = [doc for _, doc in DOCS if doc["kind"] == "Service" and "mlflow" in doc["metadata"]["name"]]
    expected = f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    head = _one("RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert _env(head)["MLFLOW_TRACKING_URI"]["value"] == expected
    runtime_env = yaml.safe_load(_one("RayJob")["spec"]["runtimeEnvYAML"])
    assert runtime_env["env_vars"]["MLFLOW_TRACKING_URI"] == expected


def test_every_ray_and_retrain_pod_mounts_the_shared_volume_at_one_path() -> None:
    claim = _one("PersistentVolumeClaim")
    assert claim["metadata"]["name"] == SHARED_CLAIM and claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for where, spec in _pod_specs():
        if "Ray" not in where and "CronJob" not in where:
            continue
        claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in spec["volumes"]}
        mounts = {
            m["mountPath"]
            for c in spec["containers"]
            for m in c["volumeMounts"]
            if claims.get(m["name"]) == SHARED_CLAIM
        }
        assert mounts == {SHARED_MOUNT}, f"{where}: expected {SHARED_CLAIM} at {SHARED_MOUNT}, got {mounts}"


def test_cronjob_retrains_one_at_a_time_on_the_ray_cluster() -> None:
    cronjob = _one("CronJob")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert len(cronjob["spec"]["schedule"].split()) == 5
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] >= 0 and job["template"]["spec"]["restartPolicy"] == "Never"
    (container,) = job["template"]["spec"]["containers"]
    assert {"requests", "limits"} <= container["resources"].keys()
    assert "genfoundry retrain" in " ".join(container["command"] + container["args"])
    head_service = f"{_one('RayCluster')['metadata']['name']}-head-svc"  # KubeRay's name for it
    assert _env(container)["RAY_ADDRESS"]["value"] == f"http://{head_service}:8265"


def test_images_are_the_ones_the_dockerfile_builds() -> None:
    dockerfile = DOCKERFILE.read_text()
    assert re.search(r"^FROM \S+ AS mlflow$", dockerfile, flags=re.MULTILINE)
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in dockerfile
    for where, spec in _pod_specs():
        for container in _containers(spec):
            if container["name"] != "postgres":
                assert container["image"].startswith("ghcr.io/your-org/genfoundry"), where


def test_dockerfile_copies_only_what_exists_and_is_not_ignored() -> None:
    ignore = (INFRA / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
    for line in DOCKERFILE.read_text().splitlines():
        if not line.startswith("COPY "):
            continue
        sources = [word for word in shlex.split(line)[1:-1] if not word.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), f"{line}: {source} is missing"
            assert f"!{source}" in ignore or f"!{source}/" in ignore, f"{source} is excluded from the context"


# --- no credentials in the repository ----------------------------------------------------------------


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def _referenced_secrets() -> set[tuple[str, str]]:
    return {(value["name"], value["key"]) for _, doc in DOCS for _, key, value in _walk(doc) if key == "secretKeyRef"}


@pytest.mark.parametrize("item", DOCS, ids=_doc_id)
def test_no_literal_credentials(item: tuple[Path, dict[str, Any]]) -> None:
    _, doc = item
    assert doc["kind"] != "Secret", "Secrets are created with kubectl (infra/README.md), not committed"
    for where, key, value in _walk(doc):
        if isinstance(key, str) and SENSITIVE_KEY.search(key):
            assert not isinstance(value, str | int | float), f"{where}.{key} holds a literal value"
        if key == "env":
            for var in value:
                if SENSITIVE_ENV.search(var["name"]):
                    assert "secretKeyRef" in var.get("valueFrom", {}), f"{where}: {var['name']} is literal"


@pytest.mark.parametrize("path", [*MANIFESTS, WORKFLOW], ids=lambda p: p.name)
def test_no_credentials_in_text(path: Path) -> None:
    text = path.read_text()
    # user:password@ in URIs only from variables: ${VAR} (shell), $(VAR) (Kubernetes), ${{ }} (Actions)
    for user, password in re.findall(r"://([^/\s:@]+):([^@\s]+)@", text):
        assert password.startswith("$"), f"{path.name}: literal password in a URI for {user}"
    for name, value in re.findall(r"([\w.-]*(?:password|passwd|token)[\w.-]*)\s*[:=][ \t]*(\S+)", text, re.I):
        assert value.startswith(("$", "{")), f"{path.name}: {name} = {value}"


def test_every_referenced_secret_is_created_by_the_readme_or_kuberay() -> None:
    readme = (INFRA / "README.md").read_text()
    commands = re.sub(r"\\\n\s*", " ", readme)  # join continued shell lines
    created = {
        (name, key)
        for name, options in re.findall(r"kubectl create secret generic (\S+)([^\n]*)", commands)
        for key in re.findall(r"--from-literal=([\w.-]+)=", options)
    }
    # KubeRay (>= 1.5) generates Secret <cluster name>, key auth_token, for a cluster with token authOptions
    cluster = _one("RayCluster")
    if cluster["spec"].get("authOptions", {}).get("mode") == "token":
        created.add((cluster["metadata"]["name"], "auth_token"))
    assert _referenced_secrets() <= created, _referenced_secrets() - created


def test_ray_clients_send_the_clusters_token() -> None:
    cluster = _one("RayCluster")
    (container,) = _one("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    env = _env(container)
    if cluster["spec"].get("authOptions", {}).get("mode") != "token":
        assert "RAY_AUTH_TOKEN" not in env
        return
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    token = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert (token["name"], token["key"]) == (cluster["metadata"]["name"], "auth_token")


# --- the scheduled GitHub Actions workflow ------------------------------------------------------------


def test_workflow_is_scheduled_and_runs_retrain() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as True
    crons = [entry["cron"] for entry in triggers["schedule"]]
    assert crons and all(len(cron.split()) == 5 for cron in crons)
    assert "workflow_dispatch" in triggers
    assert workflow["concurrency"]["cancel-in-progress"] is False
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert any(re.search(r"^genfoundry retrain\b", run, flags=re.MULTILINE) for run in runs)
    for job in workflow["jobs"].values():
        for name, value in job.get("env", {}).items():
            if SENSITIVE_ENV.search(name):
                assert value.startswith("${{ secrets."), f"{name} is not read from a repository secret"


# --- genfoundry-workspace (the entrypoint both the RayJob and the CronJob run) ------------------------


def _run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def workspace_env(tmp_path: Path) -> dict[str, str]:
    """A git origin with one commit, and a fake `dvc` on PATH that logs its calls."""
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    origin = tmp_path / "origin"
    _run("git", "init", "-q", "-b", "main", origin, env=env)
    (origin / "params.yaml").write_text("v: 1\n")
    _run("git", "add", "params.yaml", cwd=origin, env=env)
    _run("git", "commit", "-q", "-m", "one", cwd=origin, env=env)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_dvc = bin_dir / "dvc"
    fake_dvc.write_text(
        '#!/usr/bin/env bash\necho "$*" >> "$DVC_LOG"\n'
        'if [[ "$*" == "remote list" ]]; then printf "%s" "$FAKE_REMOTES"; fi\n'
    )
    fake_dvc.chmod(0o755)
    env |= {
        "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}",
        "DVC_LOG": str(tmp_path / "dvc.log"),
        "FAKE_REMOTES": "",
        "GENFOUNDRY_GIT_URL": str(origin),
        "GENFOUNDRY_GIT_REF": "main",
    }
    return env


def test_workspace_script_is_valid_bash() -> None:
    _run("bash", "-n", WORKSPACE_SCRIPT)


def test_workspace_clones_then_fast_forwards_and_runs_the_command(
    tmp_path: Path, workspace_env: dict[str, str]
) -> None:
    ws = tmp_path / "ws"
    _run("bash", WORKSPACE_SCRIPT, ws, "bash", "-c", "cat params.yaml > ran.txt", env=workspace_env)
    assert (ws / "ran.txt").read_text() == "v: 1\n"
    assert Path(workspace_env["DVC_LOG"]).read_text().splitlines() == ["remote list"]  # no remote: no sync

    origin = Path(workspace_env["GENFOUNDRY_GIT_URL"])
    (origin / "params.yaml").write_text("v: 2\n")
    _run("git", "commit", "-q", "-am", "two", cwd=origin, env=workspace_env)
    _run("bash", WORKSPACE_SCRIPT, ws, env=workspace_env | {"GENFOUNDRY_DVC_CACHE": "/shared/cache"})
    assert (ws / "params.yaml").read_text() == "v: 2\n"
    assert Path(workspace_env["DVC_LOG"]).read_text().splitlines()[1:] == [
        "cache dir --local /shared/cache",
        "remote list",
    ]


def test_workspace_syncs_dvc_around_the_command_and_keeps_its_exit_status(
    tmp_path: Path, workspace_env: dict[str, str]
) -> None:
    env = workspace_env | {"FAKE_REMOTES": "storage\ts3://bucket/dvc"}
    _run("bash", WORKSPACE_SCRIPT, tmp_path / "ws", "true", env=env)
    assert Path(env["DVC_LOG"]).read_text().splitlines() == ["remote list", "pull --allow-missing", "push"]

    Path(env["DVC_LOG"]).unlink()
    failed = subprocess.run(
        ["bash", WORKSPACE_SCRIPT, tmp_path / "ws", "bash", "-c", "exit 3"], env=env, capture_output=True
    )
    assert failed.returncode == 3
    assert "push" not in Path(env["DVC_LOG"]).read_text().splitlines(), "pushed the outputs of a failed run"
