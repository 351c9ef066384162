"""A real two-node Ray cluster on one machine: two network namespaces joined by a veth pair, as the tests' hosts.

Layout (every name carries a random tag, so two clusters on one machine cannot clash)::

    root namespace (the test process)   route 10.213.X.0/30 "unreachable": misdirected traffic fails at once
    gf-head-TAG  gfh-TAG 10.213.X.1/30  Ray head (GCS :6379, dashboard :8265, resource {"head": 1}), MLflow :5000
    gf-work-TAG  gfw-TAG 10.213.X.2/30  Ray worker node (resource {"worker": 1}); the project's data/ hidden

Neither namespace has a default route: what runs there reaches only loopback and the private link. The test
process stays in the root namespace and reaches the link only through :func:`call_in` (one thread moved into a
namespace) or :meth:`TwoNodeCluster.run_in` (a subprocess run there).

Both nodes see one filesystem (the venv, the code, ``storage``: the shared folder NFS would be) except the folders
in ``hidden`` (the project's ``data/`` and the scratch project's ``data/``): the worker node runs under
``unshare --mount`` with an empty tmpfs over each, in a private mount namespace that dies with its last process.

Every process the cluster starts lives in one of its two namespaces, so :meth:`TwoNodeCluster.close` stops them
all by namespace (``ip netns pids``), deletes the namespaces (the veth pair goes with them) and the route, and then
checks that nothing is left (:meth:`TwoNodeCluster.leftovers`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import json
import os
import random
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from tests.conftest import ROOT

BIN = Path(sys.executable).parent
# Ray's and MLflow's default ports: each namespace has its own network stack, so nothing else on the machine
# (another Ray instance, its agents' fixed ports) can hold them
GCS_PORT, DASHBOARD_PORT, MLFLOW_PORT = 6379, 8265, 5000
CLONE_NEWNET = 0x40000000
RAY_LOGS = ("raylet.out", "raylet.err", "gcs_server.err", "dashboard.err", "dashboard_agent.log")
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsNotPermitted(RuntimeError):
    """``ip netns add`` failed here (not root, no CAP_SYS_ADMIN, no ``ip``): callers skip."""


def ip(*args: str, check: bool = True) -> str:
    """``ip ARGS``' stdout; with ``check``, a RuntimeError naming the command on failure."""
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def ip_ok(*args: str) -> bool:
    return subprocess.run(["ip", *args], capture_output=True, timeout=60).returncode == 0


def call_in(netns: str, fn: Callable[..., Any], *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in a new thread moved into network namespace ``netns`` (``setns`` is per thread: the
    test process's other threads stay in the root namespace); its result, or its exception re-raised.

    Sockets ``fn`` opens belong to ``netns``. Keep ``fn`` self-contained: a client built inside and reused outside
    would open its next connections from the root namespace."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns({netns})")
            finally:
                os.close(fd)
            out["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: B036 - handed to the caller's thread
            out["error"] = e

    t = threading.Thread(target=target, name=f"in-{netns}", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"{getattr(fn, '__name__', fn)} in {netns} did not return within {timeout} s")
    if "error" in out:
        raise out["error"]
    return out["value"]


def http_get(url: str, token: str | None = None, timeout: float = 10.0) -> bytes:
    """GET ``url`` (no proxies, ``Bearer token``): its body. Run it through :func:`call_in`."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with opener.open(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
        return r.read()


def http_json(url: str, token: str | None = None, timeout: float = 10.0) -> Any:
    return json.loads(http_get(url, token, timeout))


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"({e})"


@dataclass
class Node:
    role: str  # "head" | "worker"
    netns: str
    iface: str
    temp_dir: str  # the node's `ray start --temp-dir`
    ip: str = ""
    node_id: str = ""  # the Ray node id of its current raylet
    last_start: str = ""  # the output of its last `ray start`


class TwoNodeCluster:
    """Two network namespaces, a Ray head and a Ray worker node in them, an MLflow server on the head's address.

    :meth:`start` brings it up; :meth:`close` (always call it, also after a failed start) tears down everything
    it made and raises if anything is left. ``num_cpus`` is each node's CPU count."""

    def __init__(self, *, mlflow_backend_uri: str | None = None, num_cpus: int = 1) -> None:
        tag = secrets.token_hex(3)
        # short: Ray's unix sockets live under the nodes' temp dirs (108-byte limit)
        self.base = Path(tempfile.mkdtemp(prefix="gf-cl-", dir="/tmp"))
        self.storage = self.base / "storage"  # the runs' storage_path, on both nodes (as NFS would be)
        self.project = self.base / "project"  # a scratch project (params.yaml, data/): the jobs' working directory
        self.mlflow_dir = self.base / "mlflow"
        for d in (self.storage, self.project / "data", self.mlflow_dir):
            d.mkdir(parents=True)
        self.hidden = [p for p in (ROOT / "data", self.project / "data") if p.is_dir()]  # empty on the worker
        self.token = secrets.token_hex(32)  # Ray 2.60 clusters want token auth; every client reads RAY_AUTH_TOKEN
        self.num_cpus = num_cpus
        self.mlflow_backend_uri = mlflow_backend_uri or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"
        self.head = Node("head", f"gf-head-{tag}", f"gfh-{tag}", str(self.base / "ray-head"))
        self.worker = Node("worker", f"gf-work-{tag}", f"gfw-{tag}", str(self.base / "ray-worker"))
        self.route = ""  # the /30 held by an "unreachable" route in the root namespace
        self._tmpfs = f"gf-hidden-{tag}"  # the hiding mounts' source name: how leftovers() finds them
        self._mlflow: subprocess.Popen | None = None

    # -- addresses and environment -------------------------------------------------------------------------------
    @property
    def gcs_address(self) -> str:
        return f"{self.head.ip}:{GCS_PORT}"

    @property
    def dashboard_url(self) -> str:
        """``ray job submit --address``; the jobs and state APIs."""
        return f"http://{self.head.ip}:{DASHBOARD_PORT}"

    @property
    def mlflow_uri(self) -> str:
        return f"http://{self.head.ip}:{MLFLOW_PORT}"

    @property
    def node_ids(self) -> dict[str, str]:
        return {"head": self.head.node_id, "worker": self.worker.node_id}

    @property
    def env(self) -> dict[str, str]:
        """The environment of everything run in the namespaces: no proxies, the Ray token, ``RAY_ADDRESS`` and
        ``MLFLOW_TRACKING_URI`` of this cluster."""
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and not k.startswith("PYTEST")}
        return env | {
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "RAY_ADDRESS": self.gcs_address,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
            "RAY_USAGE_STATS_ENABLED": "0",
            # the raylet waits this long for its agent to register: Ray's default is short for 2 busy cores
            "RAY_agent_register_timeout_ms": "120000",
            "MLFLOW_TRACKING_URI": self.mlflow_uri,
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }

    def _node(self, role: str | Node) -> Node:
        return role if isinstance(role, Node) else {"head": self.head, "worker": self.worker}[role]

    def _prefix(self, node: Node) -> list[str]:
        """Run in ``node``'s namespace; on the worker, under ``unshare --mount`` with an empty tmpfs over each
        hidden folder (a private mount namespace, so nothing propagates back to the root namespace's mounts)."""
        argv = ["ip", "netns", "exec", node.netns]
        if node is self.worker:
            mounts = [f"mount -t tmpfs -o size=64m {self._tmpfs} {shlex.quote(str(p))}" for p in self.hidden]
            script = " && ".join([*mounts, 'exec "$@"'])
            argv += ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
        return argv

    # -- starting ------------------------------------------------------------------------------------------------
    def start(self) -> TwoNodeCluster:
        self._network()
        self._start_mlflow()  # comes up in the background while the Ray nodes start
        self._start_ray(self.head)
        self.head.node_id = self.wait_node(self.head)
        self._start_ray(self.worker)
        self.worker.node_id = self.wait_node(self.worker)
        self.wait(self._mlflow_up, timeout=300, what="the MLflow server's /health")  # > 90 s on 2 busy cores
        return self

    def _network(self) -> None:
        try:
            r = subprocess.run(["ip", "netns", "add", self.head.netns], capture_output=True, text=True, timeout=60)
        except FileNotFoundError as e:
            raise NetnsNotPermitted(f"no ip command: {e}") from None
        if r.returncode != 0:
            raise NetnsNotPermitted(r.stderr.strip() or f"ip netns add: exit status {r.returncode}")
        ip("netns", "add", self.worker.netns)
        link = self._reserve_subnet()
        # made inside the namespaces: the pair never appears in the root namespace, and dies with them
        ip("link", "add", self.head.iface, "netns", self.head.netns, "type", "veth",
           "peer", "name", self.worker.iface, "netns", self.worker.netns)  # fmt: skip
        for node, host in ((self.head, link[1]), (self.worker, link[2])):
            node.ip = str(host)
            ip("-n", node.netns, "addr", "add", f"{host}/{link.prefixlen}", "dev", node.iface)
            ip("-n", node.netns, "link", "set", node.iface, "up")
            ip("-n", node.netns, "link", "set", "lo", "up")

    def _reserve_subnet(self) -> ipaddress.IPv4Network:
        """A random 10.213.X.0/30 overlapping no address or route of the root namespace, held there by an
        "unreachable" route: a root-namespace client pointed at the link fails at once instead of asking the
        default gateway, and a second cluster cannot take the same X (adding the route again fails)."""
        taken = [ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False)
                 for i in json.loads(ip("-j", "-4", "addr")) for a in i.get("addr_info", [])]  # fmt: skip
        taken += [ipaddress.ip_network(r["dst"]) for r in json.loads(ip("-j", "-4", "route")) if r["dst"] != "default"]
        for x in random.sample(range(1, 255), 254):
            link = ipaddress.IPv4Network(f"10.213.{x}.0/30")
            if not any(link.overlaps(t) for t in taken) and ip_ok("route", "add", "unreachable", str(link)):
                self.route = str(link)
                return link
        raise RuntimeError("no free 10.213.X.0/30 in the root namespace")

    def _start_ray(self, node: Node, attempts: int = 2) -> None:
        """``ray start`` (no ``--block``: it returns once the node's daemons run; they stay in its namespace). On two
        busy cores a raylet can give up waiting for its own agent ("Timed out waiting for file ...agent_port..."):
        then what that start left is stopped and it is tried once more."""
        if node is self.head:
            role = ["--head", f"--port={GCS_PORT}", f"--dashboard-port={DASHBOARD_PORT}", "--include-dashboard=true",
                    f"--dashboard-host={node.ip}"]  # fmt: skip
        else:
            role = [f"--address={self.gcs_address}"]
        argv = [str(BIN / "ray"), "start", *role,
                f"--node-ip-address={node.ip}",  # no default route: Ray's own guess would fail
                f"--temp-dir={node.temp_dir}", f"--num-cpus={self.num_cpus}",
                f"--resources={json.dumps({node.role: 1})}", f"--object-store-memory={512 * 2**20}",
                "--disable-usage-stats"]  # fmt: skip
        env = {k: v for k, v in self.env.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
        # both namespaces share one hostname, which /etc/hosts maps to 127.0.0.1: gloo (DDP on CPU) would advertise
        # that to the other node, so pin it to the node's link, as multi-node setups do (GLOO_SOCKET_IFNAME=eth0)
        env["GLOO_SOCKET_IFNAME"] = node.iface
        for _ in range(attempts):
            try:
                r = subprocess.run([*self._prefix(node), *argv], env=env, capture_output=True, text=True, timeout=300)
                node.last_start = f"exit status {r.returncode}\n{r.stdout}\n{r.stderr}"
                if r.returncode == 0:
                    return
            except subprocess.TimeoutExpired as e:
                node.last_start = f"timed out after 300 s\n{e.stdout or ''}\n{e.stderr or ''}"
            print(f"ray start on the {node.role} failed:\n{self.log_tails()}", file=sys.stderr)
            self._stop_ray(node)
        raise AssertionError(f"ray start on the {node.role} failed {attempts} times\n{self.log_tails()}")

    def _start_mlflow(self) -> None:
        argv = [str(BIN / "mlflow"), "server", "--host", self.head.ip, "--port", str(MLFLOW_PORT), "--workers", "1",
                "--backend-store-uri", self.mlflow_backend_uri,
                "--artifacts-destination", str(self.mlflow_dir / "artifacts")]  # fmt: skip
        with open(self.mlflow_dir / "server.log", "w") as log:
            self._mlflow = subprocess.Popen([*self._prefix(self.head), *argv], stdout=log, stderr=subprocess.STDOUT,
                                            env=self.env, cwd=self.mlflow_dir)  # fmt: skip

    def _mlflow_up(self) -> bool:
        if self._mlflow is not None and self._mlflow.poll() is not None:
            raise AssertionError(f"the MLflow server exited ({self._mlflow.returncode})\n{self.log_tails()}")
        return self.call(http_get, f"{self.mlflow_uri}/health", timeout=30) is not None

    # -- looking at the cluster ----------------------------------------------------------------------------------
    def state(self, resource: str, **filters: str) -> list[dict[str, Any]]:
        """Ray's state API on the head (``/api/v0/<resource>``: nodes, actors, ..., dead ones included), rows
        whose fields equal ``filters``."""
        query = [("limit", "10000"), ("detail", "true")]
        for k, v in filters.items():
            query += [("filter_keys", k), ("filter_predicates", "="), ("filter_values", v)]
        url = f"{self.dashboard_url}/api/v0/{resource}?{urllib.parse.urlencode(query)}"
        data = self.call(http_json, url, self.token, 30)
        if not data.get("result"):
            raise RuntimeError(f"state API {resource}: {data.get('msg')}")
        return data["data"]["result"]["result"]

    def node_states(self) -> dict[str, str]:
        """``{node_id: "ALIVE" | "DEAD"}`` of every node the head has seen."""
        return {n["node_id"]: n["state"] for n in self.state("nodes")}

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 120, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` run in the head's namespace (:func:`call_in`): an MLflow client, an HTTP call."""
        return call_in(self.head.netns, fn, *args, timeout=timeout, **kwargs)

    def wait(self, cond: Callable[[], Any], *, timeout: float, what: str, every: float = 1.0) -> Any:
        """Poll ``cond()`` until it returns something truthy, and return that; on timeout an AssertionError
        naming ``what``, the last error and the tails of both nodes' logs. An AssertionError ``cond`` raises stops
        the wait; other errors (a server not up yet) are retried."""
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            try:
                if value := cond():
                    return value
            except AssertionError:
                raise
            except Exception as e:  # not up yet
                last = e
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last!r})\n"
                             f"{self.log_tails()}")  # fmt: skip

    def wait_node(self, node: Node, *, timeout: float = 180) -> str:
        """The id of a Ray node ALIVE at ``node``'s address other than its current one, once the head lists one."""

        def alive() -> str | None:
            rows = self.state("nodes", node_ip=node.ip, state="ALIVE")
            return next((n["node_id"] for n in rows if n["node_id"] != node.node_id), None)

        return self.wait(alive, timeout=timeout, what=f"a new {node.role} node alive at {node.ip}")

    def wait_dead(self, node_id: str, *, timeout: float = 120) -> None:
        self.wait(lambda: self.node_states().get(node_id) == "DEAD", timeout=timeout, what=f"node {node_id} DEAD")

    def log_tails(self, lines: int = 30) -> str:
        parts = []
        for node in (self.head, self.worker):
            parts.append(f"===== {node.role} ({node.netns}, {node.ip}), last `ray start`:\n{node.last_start[-3000:]}")
            logs = Path(node.temp_dir) / "session_latest" / "logs"
            parts += [f"----- {node.role} {n}:\n{_tail(logs / n, lines)}" for n in RAY_LOGS if (logs / n).exists()]
        parts.append(f"===== mlflow server.log:\n{_tail(self.mlflow_dir / 'server.log', lines)}")
        return "\n".join(parts)

    # -- running things there ------------------------------------------------------------------------------------
    def run_in(
        self,
        role: str | Node,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        timeout: float = 600,
        check: bool = True,
        cwd: Path | str = ROOT,
    ) -> subprocess.CompletedProcess:
        """Run ``argv`` in the ``role`` ("head" or "worker") node's namespace (on the worker: with the hidden
        folders empty), output captured; ``env`` on top of :attr:`env`. With ``check``, a failure raises."""
        node = self._node(role)
        r = subprocess.run([*self._prefix(node), *map(str, argv)], env=self.env | (env or {}), cwd=cwd,
                           capture_output=True, text=True, timeout=timeout)  # fmt: skip
        if check and r.returncode != 0:
            raise AssertionError(f"{list(argv)} in {node.netns} failed ({r.returncode}):\n"
                                 f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}")  # fmt: skip
        return r

    def python_in(self, role: str | Node, code: str, *, timeout: float = 300, env: dict[str, str] | None = None) -> Any:
        """Run a Python snippet in ``role``'s namespace (a Ray driver: ``ray.init()`` joins the cluster); the JSON
        on its last stdout line."""
        r = self.run_in(role, [sys.executable, "-c", code], env=env, timeout=timeout)
        try:
            return json.loads(r.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            tail = f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
            raise AssertionError(f"no JSON on the last line of stdout:\n{tail}") from None

    def submit(self, entrypoint: Sequence[str], *, runtime_env: dict | None = None, timeout: float = 300) -> str:
        """``ray job submit --no-wait ... -- *entrypoint`` to the head's dashboard, from the head's namespace; the
        submission id. Retries while the head's job agent is not up yet ("No available agent")."""
        job = f"gf-{secrets.token_hex(4)}"
        argv = [str(BIN / "ray"), "job", "submit", "--address", self.dashboard_url, "--submission-id", job,
                "--no-wait", "--runtime-env-json", json.dumps(runtime_env or {}), "--", *entrypoint]  # fmt: skip
        for _ in range(12):
            r = self.run_in(self.head, argv, timeout=timeout, check=False)
            if r.returncode == 0 or "No available agent" not in r.stdout + r.stderr:
                break
            time.sleep(5)
        if r.returncode != 0:
            raise AssertionError(f"ray job submit failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        return job

    def job(self, job: str) -> dict[str, Any]:
        """The jobs API's record of submission ``job`` (status, message, driver_node_id, ...)."""
        return self.call(http_json, f"{self.dashboard_url}/api/jobs/{job}", self.token, 30)

    def job_logs(self, job: str) -> str:
        return self.call(http_json, f"{self.dashboard_url}/api/jobs/{job}/logs", self.token, 30)["logs"]

    def wait_job(self, job: str, *, timeout: float = 600) -> dict[str, Any]:
        """Wait for ``job`` to end; its record, with its driver's output under ``logs``."""
        ended = lambda: (j := self.job(job))["status"] in ("SUCCEEDED", "FAILED", "STOPPED") and j  # noqa: E731
        record = self.wait(ended, timeout=timeout, what=f"job {job} to end", every=2)
        return record | {"logs": self.job_logs(job)}

    # -- failure drills ------------------------------------------------------------------------------------------
    def kill_worker_raylet(self) -> int:
        """SIGKILL the worker node's raylet (its workers and agents notice and exit; its log monitor lingers); the
        pid. The head notices when its health checks fail (:meth:`wait_dead`: about 15 s with Ray's defaults)."""
        raylets = [p for p in self._procs_in(self.worker.netns) if p.info["name"] == "raylet"]
        assert len(raylets) == 1, f"expected one raylet in {self.worker.netns}, got {raylets}\n{self.log_tails()}"
        raylet = raylets[0]
        raylet.kill()
        raylet.wait(timeout=30)
        return raylet.pid

    def restart_worker_node(self, *, timeout: float = 180) -> str:
        """Stop whatever still runs on the worker node, start it again (joining the head) and return its new node
        id once the head lists it ALIVE."""
        self._kill_in(self.worker.netns)
        self._start_ray(self.worker)
        self.worker.node_id = self.wait_node(self.worker, timeout=timeout)
        return self.worker.node_id

    # -- tearing down --------------------------------------------------------------------------------------------
    def close(self) -> None:
        """SIGKILL every process in the two namespaces (Ray, MLflow, jobs: all this cluster's), delete the
        namespaces (the veth pair with them), the route and the folder; raise if anything of it is left."""
        errors = []
        for ns in (self.worker.netns, self.head.netns):
            try:
                self._kill_in(ns)
            except Exception as e:  # carry on: the rest must go too
                errors.append(f"killing the processes in {ns}: {e!r}")
        if self._mlflow is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._mlflow.wait(timeout=30)  # reap it
        for ns in (self.head.netns, self.worker.netns):
            ip("netns", "del", ns, check=False)
        if self.route:
            ip("route", "del", "unreachable", self.route, check=False)
        shutil.rmtree(self.base, ignore_errors=True)
        left = errors + self.leftovers()
        assert not left, "the two-node cluster left behind:\n  " + "\n  ".join(left)

    @staticmethod
    def _procs_in(ns: str) -> list[psutil.Process]:
        """The processes in network namespace ``ns`` (none once it is deleted)."""
        if not Path(f"/run/netns/{ns}").exists():
            return []
        pids = [int(p) for p in ip("netns", "pids", ns, check=False).split()]
        return [p for p in psutil.process_iter(["name", "cmdline"]) if p.pid in pids]

    def _stop_ray(self, node: Node) -> None:
        """SIGKILL ``node``'s Ray daemons (they name its temp dir in their arguments) and their descendants."""
        roots = [p for p in self._procs_in(node.netns) if any(node.temp_dir in a for a in p.info["cmdline"] or [])]
        procs = set(roots)
        for r in roots:
            with contextlib.suppress(psutil.NoSuchProcess):
                procs.update(r.children(recursive=True))
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(procs, timeout=10)

    def _kill_in(self, ns: str, timeout: float = 30) -> None:
        """SIGKILL every process in ``ns`` until none is left (they are all this cluster's: the namespace is)."""
        deadline = time.monotonic() + timeout
        while procs := self._procs_in(ns):
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes still in {ns} after SIGKILL: {[p.pid for p in procs]}")
            for p in procs:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
            psutil.wait_procs(procs, timeout=5)

    def mounts_in(self, pid: int) -> list[str]:
        """The hiding tmpfs mounts process ``pid`` sees."""
        try:
            info = Path(f"/proc/{pid}/mountinfo").read_text()
        except OSError:
            return []
        return [line.split()[4] for line in info.splitlines() if f" {self._tmpfs} " in line]

    def leftovers(self) -> list[str]:
        """What of this cluster still exists: namespaces, links, the route, mounts, processes, its folder."""
        netns = ip("netns", "list")
        left = [f"network namespace {n.netns}" for n in (self.head, self.worker) if n.netns in netns]
        links = ip("-o", "link")
        left += [f"link {n.iface} in the root namespace" for n in (self.head, self.worker) if f" {n.iface}" in links]
        if self.route and self.route in ip("route"):
            left.append(f"route unreachable {self.route}")
        left += [f"tmpfs {self._tmpfs} on {m} (pid {pid}'s mount namespace)" for pid in psutil.pids()
                 for m in self.mounts_in(pid)]  # fmt: skip
        for p in psutil.process_iter(["cmdline"]):
            if any(str(self.base) in a for a in p.info["cmdline"] or []):
                left.append(f"process {p.pid}: {' '.join(p.info['cmdline'])[:200]}")
        if self.base.exists():
            left.append(f"directory {self.base}")
        return left
