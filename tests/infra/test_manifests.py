"""Offline checks of infra/ (Kubernetes, KubeRay, Docker) and .github/workflows/retrain.yml.

Core Kubernetes objects are validated against the OpenAPI schemas that ``kubernetes-validate`` ships, in
strict mode (an unknown or misspelt field fails). KubeRay's ``ray.io/v1`` kinds have no schema there: their
required fields are checked here, and their pod templates are validated as core ``PodTemplate`` objects.
The rest checks that the pieces agree with each other (names, ports, volumes, versions, Secrets), that no
credential is written in the repository, and the deployment hardening: token auth and a pod-IP dashboard on
both Ray clusters, MLflow denying by default, the database password only in a Secret file, NetworkPolicies,
and, for every container of every pod (KubeRay's additions included), one test per rule: non-root, no
privilege escalation, no capabilities, seccomp RuntimeDefault, CPU and memory requests and limits, and a
sizeLimit on memory-backed emptyDirs. A failure names the manifest, object, group and container.
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


def _pod_templates() -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod template) for every pod the manifests make; where: manifest:Kind/name[group]."""
    for path, doc in DOCS:
        where = f"{path.name}:{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in ("Deployment", "StatefulSet"):
            yield where, doc["spec"]["template"]
        elif doc["kind"] == "CronJob":
            yield where, doc["spec"]["jobTemplate"]["spec"]["template"]
        elif doc["kind"] in ("RayCluster", "RayJob"):
            for group, spec in _ray_groups(_ray_cluster_spec(doc)):
                yield f"{where}[{group}]", spec["template"]
            if doc["kind"] == "RayJob" and "submitterPodTemplate" in doc["spec"]:
                yield f"{where}[submitter]", doc["spec"]["submitterPodTemplate"]


def _pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod spec) for every pod the manifests make."""
    for where, template in _pod_templates():
        yield where, template["spec"]


def _containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return pod_spec.get("initContainers", []) + pod_spec["containers"]


# KubeRay's default submitter pod (RayJob in K8sJobMode without submitterPodTemplate): these resources and no
# securityContext (ray-operator/controllers/ray/common/job.go, GetDefaultSubmitterTemplate).
KUBERAY_DEFAULT_SUBMITTER = {
    "name": "ray-job-submitter (KubeRay's default, no submitterPodTemplate)",
    "resources": {"requests": {"cpu": "500m", "memory": "200Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
}


def _all_containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(where, pod spec, container) for every container of every pod, those KubeRay adds included.

    KubeRay adds the autoscaler sidecar to the head of a cluster with in-tree autoscaling (configured by
    autoscalerOptions.securityContext / .resources), and runs a RayJob's `ray job submit` in a pod of its
    own (submitterPodTemplate, else its default). The wait-gcs-ready init container it puts in worker pods
    copies the Ray container's securityContext and has fixed requests and limits, so the Ray container's
    checks cover it.
    """
    for where, spec in _pod_specs():
        for container in _containers(spec):
            yield where, spec, container
    for path, doc in DOCS:
        if doc["kind"] not in ("RayCluster", "RayJob"):
            continue
        where = f"{path.name}:{doc['kind']}/{doc['metadata']['name']}"
        cluster = _ray_cluster_spec(doc)
        if cluster.get("enableInTreeAutoscaling"):
            options = cluster.get("autoscalerOptions", {})
            autoscaler = {k: options[k] for k in ("securityContext", "resources") if k in options}
            yield f"{where}[head]", cluster["headGroupSpec"]["template"]["spec"], {"name": "autoscaler", **autoscaler}
        if (
            doc["kind"] == "RayJob"
            and doc["spec"].get("submissionMode", "K8sJobMode") == "K8sJobMode"
            and "submitterPodTemplate" not in doc["spec"]
        ):
            yield f"{where}[submitter]", {}, KUBERAY_DEFAULT_SUBMITTER


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
    assert {"CronJob", "Deployment", "Service", "StatefulSet", "PersistentVolumeClaim", "NetworkPolicy"} <= kinds


def test_strict_validation_rejects_a_misspelt_field() -> None:
    cronjob = yaml.safe_load(yaml.safe_dump(_one("CronJob")))
    cronjob["spec"]["concurrencyPolcy"] = cronjob["spec"].pop("concurrencyPolicy")
    with pytest.raises(kubernetes_validate.ValidationError, match="concurrencyPolcy"):
        kubernetes_validate.validate(cronjob, K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("kind", ["RayCluster", "RayJob"])
def test_ray_pod_templates_match_kubernetes_schema(kind: str, version: str) -> None:
    doc = _one(kind)
    templates = {group: spec["template"] for group, spec in _ray_groups(_ray_cluster_spec(doc))}
    if "submitterPodTemplate" in doc["spec"]:
        templates["submitter"] = doc["spec"]["submitterPodTemplate"]
    for group, template in templates.items():
        pod_template = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": f"{kind.lower()}-{group}"},
            "template": template,
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
        kind = where.split(":")[1].split("/")[0]
        if kind not in ("RayCluster", "RayJob", "CronJob") or where.endswith("[submitter]"):
            continue  # the RayJob's submitter only talks to the dashboard
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
    """(Secret, key) of every secretKeyRef and of every item of a Secret volume (`*`: the whole Secret)."""
    refs = {(value["name"], value["key"]) for _, doc in DOCS for _, key, value in _walk(doc) if key == "secretKeyRef"}
    for _, doc in DOCS:
        for _, key, value in _walk(doc):
            if key == "secret" and isinstance(value, dict) and "secretName" in value:
                items = value.get("items") or [{"key": "*"}]
                refs |= {(value["secretName"], item["key"]) for item in items}
    return refs


@pytest.mark.parametrize("item", DOCS, ids=_doc_id)
def test_no_literal_credentials(item: tuple[Path, dict[str, Any]]) -> None:
    _, doc = item
    assert doc["kind"] != "Secret", "Secrets are created with kubectl (infra/README.md), not committed"
    for where, key, value in _walk(doc):
        # secretName (of a Secret volume) names a Secret, like secretKeyRef.name does
        if isinstance(key, str) and SENSITIVE_KEY.search(key) and key != "secretName":
            assert not isinstance(value, str | int | float), f"{where}.{key} holds a literal value"
        if key == "env":
            for var in value:
                if var["name"].endswith("_FILE") and var.get("value", "").startswith("/"):
                    continue  # a path (POSTGRES_PASSWORD_FILE): test_database_password_... checks it is a Secret
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


# --- deployment hardening: Ray auth and dashboard, MLflow auth, database password, network policies ----


def _head(kind: str) -> dict[str, Any]:
    return _ray_cluster_spec(_one(kind))["headGroupSpec"]


ALL_INTERFACES = {"0.0.0.0", "::", "[::]"}
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
COMPONENT = "app.kubernetes.io/component"


def test_rayjob_cluster_uses_the_same_token_auth_as_the_raycluster() -> None:
    # KubeRay (>= 1.5) generates a token Secret for the RayJob's cluster too, sets RAY_AUTH_MODE/RAY_AUTH_TOKEN
    # in its Ray containers and in the submitter, and sends the token on its own dashboard calls.
    auth = _one("RayCluster")["spec"].get("authOptions")
    assert auth == {"mode": "token"}, f"RayCluster: expected authOptions {{mode: token}}, got {auth}"
    job_auth = _one("RayJob")["spec"]["rayClusterSpec"].get("authOptions")
    assert job_auth == auth, f"RayJob: expected rayClusterSpec.authOptions {auth}, got {job_auth}"


@pytest.mark.parametrize("kind", ["RayCluster", "RayJob"])
def test_ray_dashboard_binds_to_the_pod_ip_not_all_interfaces(kind: str) -> None:
    """The head holds MLflow, S3 and git credentials, so its Jobs API listens on the pod IP only.

    KubeRay starts the head with `--dashboard-host=0.0.0.0` when rayStartParams has no dashboard-host, so
    leaving it out is no fix. 127.0.0.1 would cut off the clients KubeRay and the manifests need (the
    operator's job-status calls, the RayJob's submitter pod, the retrain CronJob), which all reach the
    dashboard through the head Service, that is on the pod IP: the value is a shell variable (KubeRay runs
    `ray start` in bash) that the head container sets from status.podIP.
    """
    head = _head(kind)
    host = head["rayStartParams"].get("dashboard-host")
    assert host is not None, f"{kind}: no dashboard-host, so KubeRay binds the dashboard to 0.0.0.0"
    assert host not in ALL_INTERFACES, f"{kind}: dashboard-host {host} listens on every interface"
    match = re.fullmatch(r"\$\{?([A-Za-z_]\w*)\}?", host)
    assert match, f"{kind}: expected dashboard-host to be the pod IP ($VAR set from status.podIP), got {host}"
    var = _env(head["template"]["spec"]["containers"][0]).get(match[1], {})
    field = var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    assert field == "status.podIP", f"{kind}: {match[1]} in the head container is {var or 'unset'}, not status.podIP"


@pytest.mark.parametrize("kind", ["RayCluster", "RayJob"])
def test_ray_head_probes_check_the_dashboard_where_it_listens(kind: str) -> None:
    """KubeRay's default head probes fetch http://localhost:8265/api/gcs_healthz, which a dashboard bound to
    the pod IP does not answer: the head sets its own, at dashboard-host (KubeRay keeps probes it finds)."""
    head = _head(kind)
    host = head["rayStartParams"].get("dashboard-host", "0.0.0.0")
    port = head["rayStartParams"].get("dashboard-port", "8265")
    variable = re.fullmatch(r"\$\{?([A-Za-z_]\w*)\}?", host)
    # $VAR or ${VAR} in the probe's shell
    address = (rf"\$\{{?{variable[1]}\}}?" if variable else re.escape(host)) + rf":{port}"
    container = head["template"]["spec"]["containers"][0]
    for name in ("readinessProbe", "livenessProbe"):
        command = container.get(name, {}).get("exec", {}).get("command")
        assert command, f"{kind}: the head container has no exec {name} (KubeRay's checks localhost:{port})"
        assert command[:2] in (["bash", "-c"], ["sh", "-c"], ["/bin/bash", "-c"], ["/bin/sh", "-c"]), (
            f"{kind}: {name} must run in a shell for {host} to expand, got {command[:2]}"
        )
        script = command[-1]
        assert re.search(rf"{address}/api/gcs_healthz", script), f"{kind}: {name} does not check {host}:{port}"
        assert "/api/local_raylet_healthz" in script, f"{kind}: {name} does not check the raylet"


def _mlflow_container() -> tuple[dict[str, Any], dict[str, Any]]:
    (deployment,) = [
        doc for _, doc in DOCS if doc["kind"] == "Deployment" and doc["metadata"]["name"].endswith("mlflow")
    ]
    spec = deployment["spec"]["template"]["spec"]
    (container,) = [c for c in spec["containers"] if c["name"] == "mlflow"]
    return spec, container


def test_mlflow_basic_auth_denies_by_default() -> None:
    # Users other than the admin get no access to what they did not create (creators get MANAGE): a
    # leaked pipeline password cannot read other experiments or models, and readers are granted READ.
    _, container = _mlflow_container()
    script = "\n".join(container.get("command", []) + container.get("args", []))
    permissions = re.findall(r"^\s*default_permission\s*=\s*(\w+)", script, flags=re.MULTILINE)
    assert permissions == ["NO_PERMISSIONS"], f"expected default_permission = NO_PERMISSIONS, got {permissions}"


DB_PASSWORD = ("genfoundry-postgres", "password")


def _secret_file(pod_spec: dict[str, Any], container: dict[str, Any], path: str) -> tuple[str, str] | None:
    """(Secret, key) of the file at path if a Secret volume of the container provides it, else None."""
    volumes = {v["name"]: v["secret"] for v in pod_spec.get("volumes", []) if "secret" in v}
    for mount in container.get("volumeMounts", []):
        secret = volumes.get(mount["name"])
        if secret is None:
            continue
        if "subPath" in mount:
            if path != mount["mountPath"]:
                continue
            relative = mount["subPath"]
        elif path.startswith(mount["mountPath"].rstrip("/") + "/"):
            relative = path[len(mount["mountPath"].rstrip("/")) + 1 :]
        else:
            continue
        items = {item["path"]: item["key"] for item in secret.get("items", [])}
        key = items.get(relative) if items else relative
        if key:
            return secret["secretName"], key
    return None


def test_database_password_is_read_from_a_mounted_secret_file() -> None:
    # An environment variable shows in /proc/<pid>/environ of every process that inherits it and gets
    # expanded into command lines; a Secret file is read by who needs it and nothing else.
    failures = []
    readers = set()
    for where, spec, container in _all_containers():
        for var in container.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef", {})
            if (ref.get("name"), ref.get("key")) == DB_PASSWORD:
                failures.append(f"{where} container {container['name']}: {var['name']} holds the database password")
            if var["name"].endswith("_FILE") and _secret_file(spec, container, var.get("value", "")) == DB_PASSWORD:
                readers.add(container["name"])
    assert not failures, "\n".join(failures)
    # postgres: the official image reads POSTGRES_PASSWORD_FILE; mlflow: its start script reads the file
    assert readers == {"postgres", "mlflow"}, f"expected postgres and mlflow to read {DB_PASSWORD} from a file"


SECRET_VALUE_ENV = re.compile(r"PASSWORD|TOKEN|SECRET|ACCESS_KEY|GIT_URL")


def _command_lines(container: dict[str, Any]) -> list[str]:
    lines = container.get("command", []) + container.get("args", [])
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        lines += container.get(probe, {}).get("exec", {}).get("command", [])
    for hook in container.get("lifecycle", {}).values():
        lines += hook.get("exec", {}).get("command", [])
    return lines


def test_no_secret_is_expanded_into_a_command_line() -> None:
    # Any user on the node (ps, /proc/<pid>/cmdline) reads a process's arguments: a credential expanded into
    # them, by Kubernetes ($(VAR)) or by a shell ($VAR, ${VAR}), leaks.
    failures = []
    for where, _, container in _all_containers():
        secret_vars = [
            var["name"]
            for var in container.get("env", [])
            if "secretKeyRef" in var.get("valueFrom", {}) and SECRET_VALUE_ENV.search(var["name"])
        ]
        text = "\n".join(_command_lines(container))
        failures += [
            f"{where} container {container['name']}: ${name} in its command line"
            for name in secret_vars
            if re.search(rf"\$[({{]?{name}\b", text)
        ]
    assert not failures, "\n".join(failures)


def test_mlflow_start_script_keeps_the_database_password_off_command_lines(tmp_path: Path) -> None:
    """Run the MLflow container's command with a fake `mlflow`: the password reaches libpq's password file
    (mode 0600) and nothing else: not mlflow's arguments, environment, store URIs or basic-auth config."""
    spec, container = _mlflow_container()
    password = "Pw0rdOnlyInTheSecretFile7"
    (tmp_path / "bin").mkdir()
    fake_mlflow = tmp_path / "bin" / "mlflow"
    fake_mlflow.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGV_LOG"\nenv > "$ENV_LOG"\n')
    fake_mlflow.chmod(0o755)
    env = {
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "ARGV_LOG": str(tmp_path / "argv.txt"),
        "ENV_LOG": str(tmp_path / "env.txt"),
        "POSTGRES_USER": "mlflow",
    }
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    for var in container.get("env", []):
        value = var.get("value")
        if value is None:
            continue
        if value.startswith("/"):  # a file: a Secret's gets the fake password, one on a volume moves here
            local = tmp_path / "files" / value.lstrip("/")
            local.parent.mkdir(parents=True, exist_ok=True)
            if _secret_file(spec, container, value) == DB_PASSWORD:
                local.write_text(password)
            else:
                assert any(value.startswith(f"{path.rstrip('/')}/") for path in mounts), f"{value} is on no volume"
            value = str(local)
        env[var["name"]] = value
    result = subprocess.run(
        container["command"] + container["args"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    argv = (tmp_path / "argv.txt").read_text()
    assert password not in argv and password not in (tmp_path / "env.txt").read_text()
    assert "--backend-store-uri\npostgresql+psycopg://mlflow@genfoundry-postgres:5432/mlflow\n" in argv
    auth_config = Path(env["MLFLOW_AUTH_CONFIG_PATH"]).read_text()
    assert password not in auth_config and "default_permission = NO_PERMISSIONS" in auth_config
    pgpass = Path(env["PGPASSFILE"])
    assert pgpass.stat().st_mode & 0o777 == 0o600, "libpq ignores a password file readable by group or others"
    assert pgpass.read_text() == f"genfoundry-postgres:5432:*:mlflow:{password}\n"


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector selects these labels ({} selects everything)."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if (
            (operator == "In" and labels.get(key) not in values)
            or (operator == "NotIn" and key in labels and labels[key] in values)
            or (operator == "Exists" and key not in labels)
            or (operator == "DoesNotExist" and key in labels)
        ):
            return False
    return True


def _ingress_policies(labels: dict[str, str]) -> list[dict[str, Any]]:
    return [
        doc
        for _, doc in DOCS
        if doc["kind"] == "NetworkPolicy"
        and _selects(doc["spec"]["podSelector"], labels)
        and "Ingress" in doc["spec"].get("policyTypes", ["Ingress"])
    ]


def _labels(template: dict[str, Any]) -> dict[str, str]:
    return template.get("metadata", {}).get("labels", {})


def _sources(peer: dict[str, Any]) -> set[str]:
    """The components of the manifests' pods a podSelector-only NetworkPolicy peer admits."""
    return {
        _labels(t).get(COMPONENT, where) for where, t in _pod_templates() if _selects(peer["podSelector"], _labels(t))
    }


def _check_peer_is_local(policy: str, peer: dict[str, Any]) -> None:
    assert set(peer) == {"podSelector"}, f"{policy}: peer {peer} admits pods of other namespaces or addresses"
    assert peer["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == "genfoundry", (
        f"{policy}: peer {peer} is not limited to genfoundry pods"
    )


# Who connects to whom: pods of component K accept connections only from pods of the components in
# INGRESS_ALLOWED[K], and from each of them. MLflow's clients are the Ray pods (RayCluster and the RayJob's
# cluster: drivers and Ray Train workers log runs); the retrain CronJob only talks to the Ray head.
INGRESS_ALLOWED = {"postgres": {"mlflow"}, "mlflow": {"ray", "pipeline"}}


@pytest.mark.parametrize("component", sorted(INGRESS_ALLOWED))
def test_network_policies_limit_who_reaches_mlflow_and_its_database(component: str) -> None:
    targets = [(where, t) for where, t in _pod_templates() if _labels(t).get(COMPONENT) == component]
    assert targets, f"no pods of component {component}"
    for where, template in targets:
        policies = _ingress_policies(_labels(template))
        assert policies, f"{where}: no NetworkPolicy selects its pods, so every pod in the cluster reaches them"
        ports = {
            p.get(k)
            for c in template["spec"]["containers"]
            for p in c.get("ports", [])
            for k in ("name", "containerPort")
        }
        admitted: set[str] = set()
        for policy in policies:
            name = f"NetworkPolicy/{policy['metadata']['name']}"
            for rule in policy["spec"].get("ingress", []):
                assert rule.get("from"), f"{name}: an ingress rule without `from` admits every source"
                assert rule.get("ports"), f"{name}: an ingress rule without `ports` admits every port"
                assert all(p["port"] in ports for p in rule["ports"]), f"{name}: {rule['ports']} vs ports {ports}"
                for peer in rule["from"]:
                    _check_peer_is_local(name, peer)
                    sources = _sources(peer)
                    assert sources <= INGRESS_ALLOWED[component], (
                        f"{name}: admits {sources - INGRESS_ALLOWED[component]}"
                    )
                    admitted |= sources
        assert admitted == INGRESS_ALLOWED[component], f"{where}: admits {admitted}, needs {INGRESS_ALLOWED[component]}"


@pytest.mark.parametrize("kind", ["RayCluster", "RayJob"])
def test_network_policies_limit_who_reaches_the_ray_pods(kind: str) -> None:
    """Ray's own traffic (GCS, raylets, object transfers, Ray Train's collectives) on any port between the
    pods of one cluster; from anything else only the dashboard port, for the clients of the Jobs API: the
    retrain CronJob (RayCluster), the submitter pod (RayJob) and the KubeRay operator, in its namespace."""
    doc = _one(kind)
    cluster = _ray_cluster_spec(doc)
    component = _labels(cluster["headGroupSpec"]["template"])[COMPONENT]
    dashboard = int(cluster["headGroupSpec"]["rayStartParams"].get("dashboard-port", "8265"))
    clients = {"RayCluster": {"retrain"}, "RayJob": {"pipeline-submitter"}}[kind]
    for group, spec in _ray_groups(cluster):
        labels = _labels(spec["template"])
        assert labels.get(COMPONENT) == component, f"{kind}[{group}]: expected the head's {COMPONENT} label"
        policies = _ingress_policies(labels)
        assert policies, f"{kind}[{group}]: no NetworkPolicy selects its pods, so every pod reaches them"
        admitted: set[str] = set()
        for policy in policies:
            name = f"NetworkPolicy/{policy['metadata']['name']}"
            for rule in policy["spec"].get("ingress", []):
                assert rule.get("from"), f"{name}: an ingress rule without `from` admits every source"
                dashboard_only = [p["port"] for p in rule.get("ports", [])] == [dashboard]
                for peer in rule["from"]:
                    if "namespaceSelector" in peer:  # the KubeRay operator, wherever it is installed
                        assert set(peer) == {"namespaceSelector", "podSelector"} and dashboard_only, (
                            f"{name}: peer {peer} from other namespaces must be the operator, to the dashboard"
                        )
                        assert peer["podSelector"].get("matchLabels") == {COMPONENT: "kuberay-operator"}, name
                        admitted.add("kuberay-operator")
                        continue
                    _check_peer_is_local(name, peer)
                    sources = _sources(peer)
                    assert sources == {component} or (dashboard_only and sources <= clients), (
                        f"{name}: admits {sources} to ports {rule.get('ports', 'all')}"
                    )
                    admitted |= sources
        assert admitted == {component, "kuberay-operator"} | clients, f"{kind}[{group}]: admits {admitted}"


# --- every container: non-root, no privilege escalation, no capabilities, seccomp, resources, memory ---


def _security(pod_spec: dict[str, Any], container: dict[str, Any], field: str) -> Any:
    """A securityContext field as it applies to the container: its own, else the pod's."""
    own = container.get("securityContext") or {}
    return own[field] if field in own else (pod_spec.get("securityContext") or {}).get(field)


def _assert_every_container(problem_of: Any) -> None:
    failures = [
        f"{where} container {container['name']}: {problem}"
        for where, spec, container in _all_containers()
        if (problem := problem_of(spec, container))
    ]
    assert not failures, "\n".join(failures)


def test_every_container_runs_as_non_root() -> None:
    def problem(spec: dict[str, Any], container: dict[str, Any]) -> str | None:
        if _security(spec, container, "runAsNonRoot") is not True:
            return "expected runAsNonRoot: true (container or pod securityContext)"
        if _security(spec, container, "runAsUser") == 0:
            return "runAsUser: 0 is root"
        return None

    _assert_every_container(problem)


def test_every_container_disallows_privilege_escalation() -> None:
    def problem(spec: dict[str, Any], container: dict[str, Any]) -> str | None:
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            return "privileged"
        if context.get("allowPrivilegeEscalation") is not False:
            return "expected securityContext.allowPrivilegeEscalation: false"
        return None

    _assert_every_container(problem)


def test_every_container_drops_all_capabilities() -> None:
    def problem(spec: dict[str, Any], container: dict[str, Any]) -> str | None:
        capabilities = (container.get("securityContext") or {}).get("capabilities") or {}
        if "ALL" not in capabilities.get("drop", []):
            return "expected securityContext.capabilities.drop: [ALL]"
        if capabilities.get("add"):
            return f"adds capabilities {capabilities['add']}"
        return None

    _assert_every_container(problem)


def test_every_container_uses_the_runtime_default_seccomp_profile() -> None:
    def problem(spec: dict[str, Any], container: dict[str, Any]) -> str | None:
        profile = (_security(spec, container, "seccompProfile") or {}).get("type")
        return None if profile == "RuntimeDefault" else f"expected seccompProfile RuntimeDefault, got {profile}"

    _assert_every_container(problem)


_UNITS = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def _quantity(value: str | int | float) -> float:
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match and match[2] in _UNITS, f"not a quantity: {value}"
    return float(match[1]) * _UNITS[match[2]]


def test_every_container_has_cpu_and_memory_requests_and_limits() -> None:
    def problem(spec: dict[str, Any], container: dict[str, Any]) -> str | None:
        resources = container.get("resources") or {}
        for kind in ("requests", "limits"):
            missing = {"cpu", "memory"} - (resources.get(kind) or {}).keys()
            if missing:
                return f"no {kind} for {sorted(missing)}"
        over = [r for r in ("cpu", "memory") if _quantity(resources["requests"][r]) > _quantity(resources["limits"][r])]
        return f"requests above limits for {over}" if over else None

    _assert_every_container(problem)


def test_every_memory_emptydir_has_a_size_limit() -> None:
    # A memory-backed emptyDir (tmpfs) is charged to the memory limit of the containers that write to it;
    # without a sizeLimit it grows up to the node's memory.
    failures = []
    for where, spec in _pod_specs():
        for volume in spec.get("volumes", []):
            empty_dir = volume.get("emptyDir")
            if empty_dir is None or empty_dir.get("medium") != "Memory":
                continue
            if "sizeLimit" not in empty_dir:
                failures.append(f"{where} volume {volume['name']}: emptyDir in memory without sizeLimit")
                continue
            for container in _containers(spec):
                if not any(m["name"] == volume["name"] for m in container.get("volumeMounts", [])):
                    continue
                limit = (container.get("resources") or {}).get("limits", {}).get("memory")
                if limit is None or _quantity(empty_dir["sizeLimit"]) >= _quantity(limit):
                    failures.append(
                        f"{where} volume {volume['name']}: sizeLimit {empty_dir['sizeLimit']} is not below "
                        f"the memory limit {limit} of container {container['name']}"
                    )
    assert not failures, "\n".join(failures)


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
