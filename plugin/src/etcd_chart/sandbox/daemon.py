"""The sandbox daemon: one detached process per state dir, controlled over `STATE/control.sock`.

It hosts the fake Kubernetes API (HTTPS on the state dir's `.1` address), the controllers, the
pods and their probes, and writes `STATE/status.json` after every change. Requests and answers are
JSON lines: `{"op": "apply", ...}` -> `{"ok": true, ...}` or
`{"ok": false, "code": 1|2, "error": "..."}` (1: the manifest asks for something the sandbox
cannot do; 2: it could not run).

Started by `etcd-chart sandbox up` as `python -m etcd_chart.sandbox.daemon --state-dir DIR`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import json
import os
import secrets
import signal
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from etcd_chart.kubedns import service_names
from etcd_chart.sandbox import podspec, references, voters
from etcd_chart.sandbox.controller import (
    DeploymentController,
    JobController,
    StatefulSetController,
    Workload,
    hook_delete_policies,
    hook_events,
    hooks_for,
    install_order_key,
)
from etcd_chart.sandbox.launch import launcher_argv
from etcd_chart.sandbox.network import (
    AddressInUse,
    HostEntry,
    Network,
    check_pod_ports,
    pod_names,
)
from etcd_chart.sandbox.runtime import GRACE_CAP, Pod, tail
from etcd_chart.sandbox.state import ProcessRecord, StateDir, kill_recorded, read_json, write_json
from etcd_chart.yamlio import YamlError, load_stream

WORKLOAD_KINDS = {
    "StatefulSet": StatefulSetController,
    "Deployment": DeploymentController,
    "Job": JobController,
}
UNRUNNABLE_KINDS = ("Pod", "DaemonSet", "ReplicaSet", "ReplicationController", "CronJob")
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "ClusterIssuer", "PriorityClass",
    "StorageClass",
    "CustomResourceDefinition", "PersistentVolume", "IngressClass", "APIService",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
}  # fmt: skip
CONFIG_ANNOTATION = "etcd-chart/config"


class SandboxError(Exception):
    """A request failed; `code` is the exit code the command line returns (1 input, 2 run)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def unshare_works() -> str | None:
    """None when mount namespaces can be created here, else why not."""
    try:
        result = subprocess.run(
            ["unshare", "--mount", "--uts", "--propagation", "private", "true"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)
    return (
        None if result.returncode == 0 else (result.stderr.strip() or f"exit {result.returncode}")
    )


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return (
        str(obj.get("kind", "")),
        str(meta.get("namespace", "") or ""),
        str(meta.get("name", "")),
    )


def _where(obj: dict[str, Any], source: str = "") -> str:
    kind, namespace, name = _key(obj)
    place = f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"
    return f"{source}: {place}" if source else place


def _plural(kind: str) -> str:
    from etcd_chart.fakeapi import plural_of

    return plural_of(kind)


def ensure_mountpoints(state: StateDir, lock: threading.Lock, mounts: list[podspec.Mount]) -> None:
    """Create the targets the pods' bind mounts need on this machine, recording each one made
    (so that `down` removes them)."""
    with lock:
        created: list[str] = read_json(state.mountpoints, []) or []
        before = len(created)
        for mount in mounts:
            target = Path(mount.target)
            if target.exists() or target.is_symlink():
                continue
            missing = []
            probe = target.parent
            while not probe.exists():
                missing.append(probe)
                probe = probe.parent
            for directory in reversed(missing):
                directory.mkdir()
                created.append(str(directory))
            if Path(mount.source).is_dir():
                target.mkdir()
            else:
                target.touch()
            created.append(str(target))
        if len(created) != before:
            write_json(state.mountpoints, created)


def remove_mountpoints(state: StateDir) -> None:
    """Remove the mount points the sandbox created, where they are still empty."""
    created: list[str] = read_json(state.mountpoints, []) or []
    kept = []
    for path in reversed(created):
        target = Path(path)
        try:
            if target.is_dir() and not target.is_symlink():
                target.rmdir()
            elif target.is_file() and target.stat().st_size == 0:
                target.unlink()
        except OSError:
            kept.append(path)
    if created:
        write_json(state.mountpoints, list(reversed(kept)))


def remove_leftovers(state: StateDir) -> None:
    """After the daemon is gone (stopped, or died): mount points, release objects, status."""
    remove_mountpoints(state)
    Network(state.network, state.hosts).remove_routes()
    release = read_json(state.release, {}) or {}
    if state.api_state.exists() and release:
        from etcd_chart.fakeapi import ApiError, ObjectStore

        store = ObjectStore(state.api_state)
        for obj in [*release.get("objects", []), *release.get("hooks", [])]:
            kind, namespace, name = _key(obj)
            with contextlib.suppress(ApiError):
                store.delete(
                    (
                        str(obj.get("apiVersion", "v1")).rpartition("/")[0],
                        _plural(kind),
                        namespace,
                        name,
                    )
                )
    status = read_json(state.status, None)
    if isinstance(status, dict) and status.get("running"):
        status.update({"running": False, "pods": [], "ready": False})
        write_json(state.status, status)


def client_info(pod: Pod) -> dict[str, Any]:
    container = pod.main_container()
    info: dict[str, Any] = {"client_url": None, "advertised_client_url": None, "tls": None}
    if container is None:
        return info
    env = container.spec.env
    endpoint = (env.get("ETCDCTL_ENDPOINTS") or "").split(",")[0].strip()
    if not endpoint and podspec.image_kind(container.spec.image) != "etcd":
        return info
    if endpoint and "://" not in endpoint:
        endpoint = f"http://{endpoint}"
    parts = urlsplit(endpoint) if endpoint else None
    scheme = parts.scheme if parts else ("https" if env.get("ETCDCTL_CACERT") else "http")
    port = (parts.port if parts else None) or container.spec.ports.get("client") or 2379
    info["client_url"] = f"{scheme}://{pod.address}:{port}"
    info["advertised_client_url"] = endpoint or None
    info["dns_name"] = parts.hostname if parts else None
    files = {}
    for field, var in (
        ("ca", "ETCDCTL_CACERT"),
        ("cert", "ETCDCTL_CERT"),
        ("key", "ETCDCTL_KEY"),
    ):
        if env.get(var):
            files[field] = host_path(container.spec.mounts, env[var])
    if files:
        info["tls"] = files
    return info


def host_path(mounts: list[podspec.Mount], path: str) -> str:
    for mount in sorted(mounts, key=lambda m: len(m.target), reverse=True):
        target = mount.target.rstrip("/")
        if path == target or path.startswith(target + "/"):
            return mount.source + path[len(target) :]
    return path


def pod_exec_spec(
    pod: Pod,
    container_name: str | None,
    program: str,
    args: list[str],
    tools: podspec.Tools,
    ensure: Any,
    hosts_file: str,
) -> dict[str, Any]:
    """The launch spec that runs `program args` inside a container of `pod` (its mounts, its
    environment, its user), with etcdctl/etcdutl of the pod's etcd version."""
    container = pod.containers.get(container_name) if container_name else pod.main_container()
    if container is None and container_name:
        raise SandboxError(
            f"pod {pod.key} has no container {container_name!r}; its containers: "
            + ", ".join(sorted(pod.containers)),
            1,
        )
    if container is None:
        raise SandboxError(f"pod {pod.key}: no main container (yet)", 1)
    etcd_image = container.spec.image
    if podspec.image_kind(etcd_image) != "etcd":
        main = pod.main_container()
        etcd_image = main.spec.image if main is not None else etcd_image
    try:
        binary = tools.etcd(program, etcd_image, f"pod {pod.key}")
    except podspec.UnknownVersion as err:
        raise SandboxError(str(err), 1) from err
    except podspec.ToolMissing as err:
        raise SandboxError(str(err), 2) from err
    target, mount = podspec.tool_mount(binary)
    ensure([mount])
    spec = container.spec.launch_spec(pod.name, hosts_file)
    spec["mounts"].append(mount.as_dict())
    spec["argv"] = [target, *args]
    return spec


def run_launch_spec(
    scratch: Path, spec: dict[str, Any], timeout: float = 15
) -> tuple[int, str, str]:
    """Run a launch spec to completion: (exit code, stdout, stderr)."""
    handle, spec_file = tempfile.mkstemp(suffix=".json", dir=scratch)
    with os.fdopen(handle, "w") as out:
        json.dump(spec, out)
    try:
        result = subprocess.run(  # noqa: S603
            launcher_argv(spec_file), capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return 1, "", f"{spec['argv'][0]} did not answer within {timeout:.0f} s"
    finally:
        Path(spec_file).unlink(missing_ok=True)
    return result.returncode, result.stdout, result.stderr


class Daemon:
    def __init__(self, state_dir: Path, namespace: str, subnet: str | None):
        self.state = StateDir(state_dir)
        self.namespace = namespace
        self.lock = threading.RLock()
        self.busy = threading.Lock()
        self.kicked = threading.Event()
        self.stopping = threading.Event()
        self.stopped = threading.Event()
        self.tools = podspec.Tools()
        self.network = Network(self.state.network, self.state.hosts, subnet)
        self.records = ProcessRecord(self.state.processes)
        self.pods: dict[str, Pod] = {}
        self.workloads: dict[tuple[str, str, str], Workload] = {}
        self.hook_jobs: dict[tuple[str, str, str], JobController] = {}
        self.stopped_pods: set[str] = set()  # NS/POD kept down by `stop` until `start`
        self.release: dict[str, Any] = read_json(self.state.release, {}) or {}
        self.cluster_domain = str(self.release.get("cluster_domain") or "cluster.local")
        self.mount_lock = threading.Lock()
        self.api: Any = None
        self._api_info: podspec.ApiInfo | None = None
        self._log_lock = threading.Lock()
        self._shutting_down = threading.Event()
        self.exit_now = threading.Event()
        self._last_status: dict[str, Any] = {}

    # --- Host protocol (used by pods) ---------------------------------------------------------

    def api_info(self) -> podspec.ApiInfo:
        assert self._api_info is not None
        return self._api_info

    def lookup(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.api.get_object("v1", _plural(kind), namespace, name)
        return found

    def claim_path(self, namespace: str, claim: str) -> Path:
        return self.state.claim_dir(namespace, claim)

    def token(self, ctx: podspec.PodContext, audience: str, seconds: int) -> str:
        return self.api_info().token

    def ensure_mountpoints(self, mounts: list[podspec.Mount]) -> None:
        ensure_mountpoints(self.state, self.mount_lock, mounts)

    def remove_mountpoints(self) -> None:
        with self.mount_lock:
            remove_mountpoints(self.state)

    def record_process(self, key: str, pid: int) -> None:
        self.records.add(key, pid)

    def forget_process(self, key: str) -> None:
        self.records.remove(key)

    def changed(self) -> None:
        self.kicked.set()

    def event(self, message: str) -> None:
        log_event(self._log_lock, message)

    def pod_gone(self, pod: Pod) -> None:
        with self.lock:
            if self.pods.get(pod.key) is pod:
                del self.pods[pod.key]
            if not pod.owner.startswith("StatefulSet/"):
                self.network.release(pod.key)
        self.event(f"pod {pod.key}: gone")
        self.changed()

    # --- Daemon protocol (used by controllers) -------------------------------------------------

    def create_pod(
        self,
        owner: str,
        name: str,
        namespace: str,
        template: dict[str, Any],
        revision: str,
        ordinal: int | None = None,
        subdomain: str = "",
    ) -> Pod:
        key = f"{namespace}/{name}"
        pod = Pod(
            host=self,
            name=name,
            namespace=namespace,
            owner=owner,
            template=template,
            address=self.network.address_for(key),
            revision=revision,
            ordinal=ordinal,
            hostname=name,
            subdomain=subdomain,
        )
        self.pods[key] = pod
        if self.network.route_error:
            self.event(f"pod {key}: no source route for {pod.address}: {self.network.route_error}")
            self.network.route_error = ""
        self.write_hosts()
        self.event(f"pod {key}: created at {pod.address} (revision {revision})")
        pod.start()
        return pod

    def remove_claims(self, namespace: str, claims: list[str]) -> None:
        import shutil

        for claim in claims:
            shutil.rmtree(self.state.claim_dir(namespace, claim), ignore_errors=True)
            self.event(f"claim {namespace}/{claim}: deleted")

    def publish_status(self, obj: dict[str, Any], status: dict[str, Any]) -> None:
        if self.api is None or self.stopping.is_set():
            return
        with contextlib.suppress(Exception):
            self.api.put_object({**copy.deepcopy(obj), "status": status})

    # --- start, loop, stop --------------------------------------------------------------------

    def start(self) -> None:
        problem = unshare_works()
        if problem:
            raise SandboxError(
                f"cannot create mount namespaces with `unshare --mount` ({problem}); the sandbox "
                "needs root or unprivileged user namespaces",
                2,
            )
        from etcd_chart.fakeapi import FakeApiServer

        self.network.choose(self.state.root)
        self.state.api_dir.mkdir(parents=True, exist_ok=True)
        token_file = self.state.api_token
        if not token_file.exists():
            token_file.write_text(secrets.token_hex(16))
            token_file.chmod(0o600)
        try:
            self.api = FakeApiServer(
                self.network.api_address,
                0,
                self.state.api_state,
                token_file.read_text().strip(),
                self.state.api_dir,
            ).start()
        except OSError as err:
            raise SandboxError(
                f"cannot start the fake Kubernetes API on {self.network.api_address}: {err}", 2
            ) from err
        self.api.write_kubeconfig(self.state.kubeconfig, self.namespace)
        self._api_info = podspec.ApiInfo(
            host=self.network.api_address,
            port=int(self.api.port),
            token=self.api.token,
            ca_pem=Path(self.api.ca_file).read_text(),
        )
        self.write_hosts()
        # Names the hosts file does not know fail at once instead of asking this machine's DNS.
        self.state.resolv_conf.write_text(
            "# written by etcd-chart sandbox: pods resolve names from /etc/hosts only\n"
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
        )
        threading.Thread(target=self._loop, name="controllers", daemon=True).start()
        self.event(
            f"daemon {os.getpid()}: subnet {self.network.subnet}.0/24, fake API {self.api.url}"
        )

    def _loop(self) -> None:
        while not self.stopped.is_set():
            self.kicked.wait(0.25)
            self.kicked.clear()
            try:
                with self.lock:
                    for key, workload in list(self.workloads.items()):
                        workload.reconcile()
                        if workload.deleted and not workload.pods():
                            del self.workloads[key]
                    for key, job in list(self.hook_jobs.items()):
                        job.reconcile()
                        if job.deleted and not job.pods():
                            del self.hook_jobs[key]
                    self.write_hosts()
                    status = self.status()
                    if status != self._last_status:
                        write_json(self.state.status, status)
                        self._last_status = status
            except Exception:  # noqa: BLE001 - keep controlling; the log says what broke
                self.event("controller loop error:\n" + traceback.format_exc())

    def shutdown(self) -> None:
        self.stopping.set()
        with self.lock:
            for workload in [*self.workloads.values(), *self.hook_jobs.values()]:
                workload.paused = True
        self.changed()
        deadline = time.monotonic() + GRACE_CAP + 15
        while self.pods and time.monotonic() < deadline:
            self.changed()
            time.sleep(0.05)
        kill_recorded(self.records, grace=2)
        self.stopped.set()
        if self.api is not None:
            for obj in [*self.release.get("objects", []), *self.release.get("hooks", [])]:
                kind, namespace, name = _key(obj)
                with contextlib.suppress(Exception):
                    self.api.delete_object(
                        str(obj.get("apiVersion", "v1")), _plural(kind), namespace, name
                    )
            self.api.stop()
        self.remove_mountpoints()
        self.network.remove_routes()
        status = self.status()
        status["running"] = False
        write_json(self.state.status, status)
        self.event("daemon: stopped")

    # --- names -----------------------------------------------------------------------------------

    def write_hosts(self) -> None:
        domain = self.cluster_domain
        entries = [
            HostEntry(self.network.api_address, service_names("kubernetes", "default", domain))
        ]
        names: dict[str, list[str]] = {}
        with self.lock:
            for workload in self.workloads.values():
                if isinstance(workload, StatefulSetController) and not workload.deleted:
                    for ordinal in range(workload.replicas):
                        pod_name = workload.pod_name(ordinal)
                        key = f"{workload.namespace}/{pod_name}"
                        self.network.address_for(key)
                        subdomain = str(workload.spec.get("serviceName") or "")
                        names[key] = pod_names(pod_name, subdomain, workload.namespace, domain)
            for key, pod in self.pods.items():
                names[key] = pod_names(pod.name, pod.subdomain, pod.namespace, domain)
            by_address = sorted(
                names, key=lambda k: tuple(int(x) for x in self.network.addresses[k].split("."))
            )
            for key in by_address:
                entries.append(HostEntry(self.network.addresses[key], names[key]))
            for obj in self.release.get("objects", []):
                if obj.get("kind") != "Service":
                    continue
                spec = obj.get("spec") or {}
                if spec.get("clusterIP") == "None" or spec.get("type") == "ExternalName":
                    continue
                selector = spec.get("selector") or {}
                _, namespace, name = _key(obj)
                chosen = [
                    pod
                    for pod in sorted(self.pods.values(), key=lambda p: p.name)
                    if pod.namespace == namespace
                    and selector
                    and all(pod.labels.get(k) == str(v) for k, v in selector.items())
                ]
                if chosen:
                    entries.append(
                        HostEntry(chosen[0].address, service_names(name, namespace, domain))
                    )
        self.network.write_hosts(entries)

    # --- status ----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        with self.lock:
            pods = []
            for pod in sorted(
                self.pods.values(), key=lambda p: (p.namespace, p.owner, p.ordinal or 0, p.name)
            ):
                entry = pod.status()
                entry.update(client_info(pod))
                pods.append(entry)
            workloads = []
            for workload in self.workloads.values():
                entry = {
                    "kind": workload.kind,
                    "name": workload.name,
                    "namespace": workload.namespace,
                    "replicas": workload.replicas,
                    "ready_pods": sum(1 for p in workload.pods() if p.ready),
                    "ready": workload.ready(),
                    "paused": workload.paused,
                }
                if isinstance(workload, JobController):
                    entry.update({"succeeded": workload.succeeded, "failed": workload.failed})
                workloads.append(entry)
            return {
                "running": not self.stopped.is_set(),
                "pid": os.getpid(),
                "state_dir": str(self.state.root),
                "subnet": self.network.subnet,
                "cluster_domain": self.cluster_domain,
                "api": {
                    "url": self.api.url if self.api else None,
                    "ca_file": self.api.ca_file if self.api else None,
                    "kubeconfig": str(self.state.kubeconfig),
                },
                "release": {k: self.release.get(k) for k in ("name", "namespace")},
                "pods": pods,
                "workloads": workloads,
                "ready": self._all_ready(),
            }

    def _all_ready(self) -> bool:
        with self.lock:
            serving = [
                w
                for w in self.workloads.values()
                if not isinstance(w, JobController) and not w.deleted
            ]
            return all(w.ready() for w in serving)

    # --- apply -----------------------------------------------------------------------------------

    def _parse(
        self, manifest: str, namespace: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[int, str]]:
        try:
            documents = load_stream(manifest)
        except YamlError as err:
            raise SandboxError(f"manifest: {err}", 1) from err
        objects: list[dict[str, Any]] = []
        hooks: list[dict[str, Any]] = []
        sources: dict[int, str] = {}
        errors = []
        for document in documents:
            body = document.body
            if (
                not isinstance(body, dict)
                or not body.get("kind")
                or not (body.get("metadata") or {}).get("name")
            ):
                errors.append(
                    f"{document.source or f'document {document.index + 1}'}: not a Kubernetes "
                    "object (kind and metadata.name are required)"
                )
                continue
            body = copy.deepcopy(body)
            meta = body.setdefault("metadata", {})
            if body["kind"] not in CLUSTER_SCOPED and not meta.get("namespace"):
                meta["namespace"] = namespace
            sources[id(body)] = document.source
            (hooks if hook_events(body) else objects).append(body)
        if errors:
            raise SandboxError("\n".join(errors), 1)
        return objects, hooks, sources

    def _validate(
        self, objects: list[dict[str, Any]], hooks: list[dict[str, Any]], sources: dict[int, str]
    ) -> None:
        errors: list[str] = []
        configmaps = {
            (_key(o)[1], _key(o)[2]): o for o in objects + hooks if o.get("kind") == "ConfigMap"
        }
        if not any(o.get("kind") in ("StatefulSet", "Deployment") for o in objects):
            errors.append("manifest: no StatefulSet or Deployment to run")
        for obj in objects + hooks:
            kind, namespace, name = _key(obj)
            where = _where(obj, sources.get(id(obj), ""))
            if kind in UNRUNNABLE_KINDS:
                errors.append(
                    f"{where}: kind {kind} cannot be emulated by the sandbox "
                    "(it runs StatefulSets, Deployments and Jobs)"
                )
                continue
            if kind not in WORKLOAD_KINDS:
                continue
            template = copy.deepcopy((obj.get("spec") or {}).get("template") or {})
            if kind == "StatefulSet":
                spec = template.setdefault("spec", {})
                claims = [
                    str((t.get("metadata") or {}).get("name"))
                    for t in (obj.get("spec") or {}).get("volumeClaimTemplates") or []
                ]
                spec["volumes"] = [
                    *(spec.get("volumes") or []),
                    *({"name": c, "persistentVolumeClaim": {"claimName": c}} for c in claims),
                ]
                reference = str(
                    ((obj.get("metadata") or {}).get("annotations") or {}).get(
                        CONFIG_ANNOTATION, ""
                    )
                )
                if reference:
                    cm_name, _, cm_key = reference.partition("/")
                    configmap = configmaps.get((namespace, cm_name))
                    try:
                        config = json.loads(((configmap or {}).get("data") or {}).get(cm_key, "{}"))
                    except ValueError:
                        config = {}
                    if isinstance(config, dict):
                        try:
                            podspec.check_config_listeners(
                                f"ConfigMap {namespace}/{cm_name} key {cm_key}", config
                            )
                        except podspec.Unsupported as err:
                            errors.append(str(err))
            try:
                errors += podspec.check_template(
                    where, template, self.tools, self.lookup, namespace
                )
            except podspec.ToolMissing as err:  # the message names the template and container
                raise SandboxError(str(err), 2) from err
        if errors:
            raise SandboxError("\n".join(errors), 1)

    def _issue_certificates(self, objects: list[dict[str, Any]]) -> None:
        if not any(o.get("kind") == "Certificate" for o in objects):
            return
        try:
            from etcd_chart import certmanager
        except ImportError as err:
            raise SandboxError(
                f"the local cert-manager (etcd_chart.certmanager) is not available: {err}", 2
            ) from err
        try:
            issued = certmanager.issue_certificates(objects, self.state.certs)
        except (ValueError, KeyError) as err:
            raise SandboxError(f"cert-manager: {err}", 1) from err
        for (namespace, name), data in issued.items():
            self.api.put_object(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "type": "kubernetes.io/tls",
                    "metadata": {
                        "name": name,
                        "namespace": namespace,
                        "annotations": {"cert-manager.io/issued-by": "etcd-chart sandbox"},
                    },
                    "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
                }
            )

    def _check_ports(self, objects: list[dict[str, Any]]) -> None:
        for obj in objects:
            if obj.get("kind") != "StatefulSet" or (_key(obj)) in self.workloads:
                continue
            _, namespace, name = _key(obj)
            spec = obj.get("spec") or {}
            template_spec = (spec.get("template") or {}).get("spec") or {}
            for ordinal in range(
                int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
            ):
                pod = f"{namespace}/{name}-{ordinal}"
                check_pod_ports(template_spec, self.network.address_for(pod), pod)

    def apply(self, request: dict[str, Any]) -> dict[str, Any]:
        action = str(request.get("action", "install"))
        namespace = str(request.get("namespace") or self.namespace)
        timeout = float(request.get("timeout", 120))
        deadline = time.monotonic() + timeout
        if request.get("cluster_domain"):
            self.cluster_domain = str(request["cluster_domain"])
        if request.get("bin_dir"):
            self.tools.set_bin_dir(str(request["bin_dir"]))
        objects, hooks, sources = self._parse(str(request.get("manifest", "")), namespace)
        self._validate(objects, hooks, sources)
        if action == "install":
            try:
                self._check_ports(objects)
            except AddressInUse as err:
                raise SandboxError(str(err), 2) from err
        self._issue_certificates(objects + hooks)
        for ns in sorted({_key(o)[1] for o in objects + hooks if _key(o)[1]}):
            self.api.put_object(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "kube-root-ca.crt", "namespace": ns},
                    "data": {"ca.crt": self.api_info().ca_pem},
                }
            )
        absent = references.missing(objects + hooks, self.lookup)
        if absent:
            raise SandboxError(references.report(absent), 1)
        event = "install" if action == "install" else "upgrade"
        self._run_hooks(f"pre-{event}", hooks, deadline)
        self._apply_objects(objects)
        self.release = {
            "name": request.get("release"),
            "namespace": namespace,
            "cluster_domain": self.cluster_domain,
            "objects": objects,
            "hooks": hooks,
        }
        write_json(self.state.release, self.release)
        self.changed()
        self.wait_ready(deadline - time.monotonic())
        self._run_hooks(f"post-{event}", hooks, deadline)
        return {"status": self.status()}

    def _apply_objects(self, objects: list[dict[str, Any]]) -> None:
        previous = {_key(o): o for o in self.release.get("objects", [])}
        current = {_key(o) for o in objects}
        with self.lock:
            for obj in sorted(objects, key=install_order_key):
                self.api.put_object(copy.deepcopy(obj))
                key = _key(obj)
                kind = key[0]
                if kind in WORKLOAD_KINDS:
                    if key in self.workloads and not self.workloads[key].deleted:
                        self.workloads[key].update(obj)
                    else:
                        self.workloads[key] = WORKLOAD_KINDS[kind](self, obj)
            for key, obj in previous.items():
                if key in current:
                    continue
                with contextlib.suppress(Exception):
                    self.api.delete_object(
                        str(obj.get("apiVersion", "v1")), _plural(key[0]), key[1], key[2]
                    )
                if key in self.workloads:
                    workload = self.workloads[key]
                    workload.deleted = True
                    retention = workload.spec.get("persistentVolumeClaimRetentionPolicy") or {}
                    if (
                        isinstance(workload, StatefulSetController)
                        and retention.get("whenDeleted") == "Delete"
                    ):
                        claims = [
                            c for o in range(workload.replicas) for c in workload.claims_of(o)
                        ]
                        threading.Thread(
                            target=self._remove_claims_later, args=(workload, claims), daemon=True
                        ).start()
        self.changed()

    def _remove_claims_later(self, workload: Workload, claims: list[str]) -> None:
        while workload.pods():
            time.sleep(0.1)
        self.remove_claims(workload.namespace, claims)

    def _delete_hook(self, hook: dict[str, Any]) -> None:
        key = _key(hook)
        with contextlib.suppress(Exception):
            self.api.delete_object(
                str(hook.get("apiVersion", "v1")), _plural(key[0]), key[1], key[2]
            )
        with self.lock:
            job = self.hook_jobs.get(key)
            if job is not None:
                job.deleted = True
        self.changed()

    def _run_hooks(self, event: str, hooks: list[dict[str, Any]], deadline: float) -> None:
        done = []
        for hook in hooks_for(event, hooks):
            key = _key(hook)
            policies = hook_delete_policies(hook)
            if "before-hook-creation" in policies:
                self._delete_hook(hook)
                while key in self.hook_jobs and time.monotonic() < deadline:
                    time.sleep(0.05)
            self.api.put_object(copy.deepcopy(hook))
            self.event(f"hook {event}: {_where(hook)}")
            if key[0] == "Job":
                job = JobController(self, hook)
                with self.lock:
                    self.hook_jobs[key] = job
                self.changed()
                while not job.finished:
                    if self.stopping.is_set():
                        raise SandboxError(f"{event} hook {_where(hook)}: interrupted", 2)
                    if time.monotonic() > deadline:
                        raise SandboxError(f"{event} hook {_where(hook)} did not finish in time", 2)
                    time.sleep(0.05)
                if job.failed:
                    if "hook-failed" in policies:
                        self._delete_hook(hook)
                    raise SandboxError(
                        f"{event} hook {_where(hook)} failed: {job.failed}\n{job.last_log}", 2
                    )
            done.append(hook)
        for hook in done:
            if "hook-succeeded" in hook_delete_policies(hook):
                self._delete_hook(hook)

    # --- waiting ---------------------------------------------------------------------------------

    def wait_ready(self, timeout: float) -> None:
        """Every pod Ready, then every etcd member set made of started voters only."""
        deadline = time.monotonic() + max(timeout, 0)
        while not self._all_ready():
            if self.stopping.is_set():
                raise SandboxError("interrupted: the sandbox is stopping", 2)
            if time.monotonic() > deadline:
                raise SandboxError(self.not_ready_report(), 2)
            time.sleep(0.05)
        for sts in self._etcd_statefulsets():
            self._wait_voters(sts, deadline)

    def _etcd_statefulsets(self) -> list[StatefulSetController]:
        with self.lock:
            return [
                w
                for w in self.workloads.values()
                if isinstance(w, StatefulSetController)
                and not w.deleted
                and w.replicas > 0
                and any(
                    (c := p.main_container()) is not None
                    and podspec.image_kind(c.spec.image) == "etcd"
                    for p in w.pods()
                )
            ]

    def _wait_voters(self, sts: StatefulSetController, deadline: float) -> None:
        pods = [f"{sts.name}-{i}" for i in range(sts.replicas)]

        def run(args: list[str]) -> tuple[int, str, str]:
            return self._etcdctl_in(sts.namespace, pods[0], args)

        while (found := voters.problem(run, pods)) is not None:
            if self.stopping.is_set():
                raise SandboxError("interrupted: the sandbox is stopping", 2)
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"StatefulSet {sts.namespace}/{sts.name}: every pod is Ready, but the member "
                    f"set is not done in time: {found} (see `logs POD -c member-agent`)",
                    2,
                )
            time.sleep(0.5)

    def _etcdctl_in(self, namespace: str, pod: str, args: list[str]) -> tuple[int, str, str]:
        try:
            found = self.find_pod(pod, namespace)
            container = found.main_container()
            if container is not None and not container.spec.env.get("ETCDCTL_ENDPOINTS"):
                url = client_info(found)["client_url"]
                args = [f"--endpoints={url}", *args] if url else args
            spec = self.exec_spec(pod, namespace, None, "etcdctl", args)
        except SandboxError as err:
            return 1, "", str(err)
        return run_launch_spec(self.state.root, spec)

    def not_ready_report(self) -> str:
        lines = ["timed out waiting for every pod to be Ready"]
        with self.lock:
            for workload in self.workloads.values():
                if isinstance(workload, JobController) or workload.deleted or workload.ready():
                    continue
                lines.append(
                    f"{workload.kind} {workload.namespace}/{workload.name}: "
                    f"{sum(p.ready for p in workload.pods())}/{workload.replicas} ready"
                )
                for pod in workload.pods():
                    if pod.ready:
                        continue
                    if pod.error:
                        lines.append(f"  pod {pod.key}: {pod.error}")
                        continue
                    failing = sorted(
                        (c for c in pod.containers.values() if not c.ready and not c.finished),
                        key=lambda c: (c.restarts, c.exit_code not in (None, 0)),
                        reverse=True,
                    )
                    if not failing:
                        lines.append(f"  pod {pod.key}: {pod.phase}")
                        continue
                    container = failing[0]
                    state = "running" if container.running else f"exited {container.exit_code}"
                    lines.append(
                        f"  pod {pod.key} container {container.spec.name} "
                        f"({state}, {container.restarts} restarts, "
                        f"log {container.log}):"
                    )
                    lines += [f"    {line}" for line in tail(container.log, 8).splitlines()]
        return "\n".join(lines)

    # --- operations ------------------------------------------------------------------------------

    def find_pod(self, name: str, namespace: str | None = None) -> Pod:
        with self.lock:
            matches = [
                p
                for p in self.pods.values()
                if p.name == name and (not namespace or p.namespace == namespace)
            ]
        if not matches:
            raise SandboxError(self._why_no_pod(name, namespace), 1)
        if len(matches) > 1:
            raise SandboxError(f"pod name {name!r} is in several namespaces; pass --namespace", 1)
        return matches[0]

    def _slots(self, name: str, namespace: str | None) -> list[tuple[StatefulSetController, int]]:
        """Every live StatefulSet (in `namespace`, if given) with `name` as one of its pod names,
        and the ordinal that name has there; call with the lock held."""
        found = []
        for workload in self.workloads.values():
            if not isinstance(workload, StatefulSetController) or workload.deleted:
                continue
            if namespace and workload.namespace != namespace:
                continue
            ordinal = name.removeprefix(f"{workload.name}-")
            if ordinal != name and ordinal.isdigit():
                found.append((workload, int(ordinal)))
        return found

    def _why_no_pod(self, name: str, namespace: str | None) -> str:
        """A pod that does not run now: stopped, not created yet, or unknown (naming the pods)."""
        with self.lock:
            for workload, ordinal in self._slots(name, namespace):
                if workload.paused:
                    return f"pod {name!r} is stopped (stop-all); `start-all` brings every pod back"
                if f"{workload.namespace}/{name}" in self.stopped_pods:
                    return f"pod {name!r} is stopped; `start {name}` brings it back"
                if ordinal in workload.held:
                    return f"pod {name!r} is being replaced (restart or lose-volume); try again"
                if ordinal < workload.replicas:
                    return f"pod {name!r} is not running yet: its StatefulSet is creating it"
            running = sorted(p.name for p in self.pods.values())
        return f"no pod {name!r} in the sandbox; pods: {', '.join(running) or 'none'}"

    def _statefulset_of(self, pod: Pod) -> StatefulSetController:
        with self.lock:
            for workload in self.workloads.values():
                if (
                    isinstance(workload, StatefulSetController)
                    and workload.owner == pod.owner
                    and workload.namespace == pod.namespace
                ):
                    return workload
        raise SandboxError(f"pod {pod.key} does not belong to a StatefulSet", 1)

    def _replace_pod(self, pod: Pod, between: Any = None) -> None:
        if pod.ordinal is None:
            with self.lock:
                pod.delete()
            if not pod.wait_gone(GRACE_CAP + 10):
                raise SandboxError(f"pod {pod.key} did not stop", 2)
            self.changed()
            return
        sts = self._statefulset_of(pod)
        with self.lock:
            sts.held.add(pod.ordinal)
            pod.delete()
        self.changed()
        try:
            if not pod.wait_gone(GRACE_CAP + 10):
                raise SandboxError(f"pod {pod.key} did not stop", 2)
            if between is not None:
                between(sts, pod.ordinal)
        finally:
            with self.lock:
                sts.held.discard(pod.ordinal)
            self.changed()

    def restart(self, name: str, namespace: str | None) -> None:
        self._replace_pod(self.find_pod(name, namespace))

    def put_existing(self, objects: list[dict[str, Any]], namespace: str | None) -> list[str]:
        """Store objects created before the release, as the API server keeps them."""
        stored = []
        for obj in objects:
            body = copy.deepcopy(obj)
            metadata = body.setdefault("metadata", {})
            metadata.setdefault("namespace", namespace or self.namespace)
            if body.get("kind") == "Secret" and body.get("stringData"):
                data = body.setdefault("data", {}) or {}
                for key, value in body.pop("stringData").items():
                    data[key] = base64.b64encode(str(value).encode()).decode()
                body["data"] = data
            self.api.put_object(body)
            stored.append(f"{body.get('kind')}/{metadata['namespace']}/{metadata.get('name')}")
        self.changed()
        return stored

    def _member_slot(self, name: str, namespace: str | None) -> tuple[StatefulSetController, int]:
        """The StatefulSet and ordinal a pod name stands for, whether or not the pod runs now."""
        with self.lock:
            found = self._slots(name, namespace)
        if not found:
            raise SandboxError(f"no StatefulSet in the sandbox has a pod {name!r}", 1)
        if len(found) > 1:
            raise SandboxError(f"pod name {name!r} is in several namespaces; pass --namespace", 1)
        return found[0]

    def stop_pod(self, name: str, namespace: str | None) -> None:
        """Delete the pod and keep it from being created again until `start_pod` (a node down)."""
        sts, ordinal = self._member_slot(name, namespace)
        with self.lock:
            sts.held.add(ordinal)
            pod = sts.by_ordinal.get(ordinal)
            if pod is not None:
                pod.delete()
            self.stopped_pods.add(f"{sts.namespace}/{name}")
        self.changed()
        if pod is not None and not pod.wait_gone(GRACE_CAP + 10):
            raise SandboxError(f"pod {pod.key} did not stop", 2)
        self.event(f"pod {sts.namespace}/{name}: stopped, held until started")

    def start_pod(self, name: str, namespace: str | None) -> None:
        sts, ordinal = self._member_slot(name, namespace)
        with self.lock:
            sts.held.discard(ordinal)
            self.stopped_pods.discard(f"{sts.namespace}/{name}")
        self.event(f"pod {sts.namespace}/{name}: released")
        self.changed()

    def lose_volume(
        self, name: str, namespace: str | None, only: list[str] | None = None
    ) -> list[str]:
        """Delete and recreate the pod's claims empty (those of the claim templates named in
        `only`, when given); a stopped pod stays stopped."""
        sts, ordinal = self._member_slot(name, namespace)
        unknown = sorted(set(only or ()) - set(sts.claim_templates))
        if unknown:
            known = ", ".join(sts.claim_templates) or "none"
            raise SandboxError(
                f"--claim {', '.join(unknown)}: {name} has no such claim template (it has: {known})"
            )
        with self.lock:
            stopped = sts.paused or (ordinal in sts.held and ordinal not in sts.by_ordinal)
        lost: list[str] = []

        def wipe(sts: StatefulSetController, ordinal: int) -> None:
            import shutil

            for template, claim in zip(sts.claim_templates, sts.claims_of(ordinal), strict=True):
                if only and template not in only:
                    continue
                path = self.state.claim_dir(sts.namespace, claim)
                shutil.rmtree(path, ignore_errors=True)
                path.mkdir(parents=True, exist_ok=True)
                lost.append(claim)
                self.event(f"claim {sts.namespace}/{claim}: deleted and recreated empty")

        if stopped:
            wipe(sts, ordinal)
        else:
            self._replace_pod(self.find_pod(name, namespace), wipe)
        return lost

    def stop_all(self) -> None:
        with self.lock:
            for workload in self.workloads.values():
                workload.paused = True
            pods = list(self.pods.values())
        self.changed()
        for pod in pods:
            pod.wait_gone(GRACE_CAP + 10)
        self.changed()

    def start_all(self) -> None:
        with self.lock:
            for workload in self.workloads.values():
                workload.paused = False
        self.changed()

    def exec_spec(
        self,
        name: str,
        namespace: str | None,
        container_name: str | None,
        program: str,
        args: list[str],
    ) -> dict[str, Any]:
        pod = self.find_pod(name, namespace)
        return pod_exec_spec(
            pod,
            container_name,
            program,
            args,
            self.tools,
            self.ensure_mountpoints,
            str(self.state.hosts),
        )

    # --- requests --------------------------------------------------------------------------------

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        ns = request.get("namespace")
        answer = read_request(self, request)
        if answer is not None:
            return answer
        if op == "put_objects":
            return {"stored": self.put_existing(list(request.get("objects") or []), ns)}
        # Outside `busy`, so that a pod can be stopped or started while an upgrade waits on it.
        if op == "stop_pod":
            self.stop_pod(str(request["pod"]), ns)
            return {}
        if op == "start_pod":
            self.start_pod(str(request["pod"]), ns)
            return {}
        if op == "wait_ready":
            self.wait_ready(float(request.get("timeout", 120)))
            return {"status": self.status()}
        if op == "shutdown":
            processes = len(self.records.entries())
            threading.Thread(target=self.shutdown_then_exit, daemon=True).start()
            return {"processes": processes}
        if self.stopping.is_set():
            raise SandboxError("the sandbox is stopping", 2)
        with self.busy:
            if op == "apply":
                return self.apply(request)
            if op == "restart":
                self.restart(str(request["pod"]), ns)
                return {}
            if op == "lose_volume":
                only = [str(c) for c in request.get("claims") or []]
                return {"claims": self.lose_volume(str(request["pod"]), ns, only)}
            if op == "stop_all":
                self.stop_all()
                return {}
            if op == "start_all":
                self.start_all()
                return {}
        raise SandboxError(f"unknown request {op!r}", 2)

    def shutdown_then_exit(self) -> None:
        if self._shutting_down.is_set():
            return
        self._shutting_down.set()
        try:
            self.shutdown()
        finally:
            self.stopped.set()
            self.exit_now.set()


class Handles(Protocol):
    def handle(self, request: dict[str, Any]) -> dict[str, Any]: ...
    def event(self, message: str) -> None: ...


class _Handler(socketserver.StreamRequestHandler):
    server: Server

    def handle(self) -> None:
        line = self.rfile.readline()
        if not line:
            return
        try:
            request = json.loads(line)
            answer = {"ok": True, **self.server.daemon.handle(request)}
        except SandboxError as err:
            answer = {"ok": False, "code": err.code, "error": str(err)}
        except Exception as err:  # noqa: BLE001 - the client must get an answer
            self.server.daemon.event("request failed:\n" + traceback.format_exc())
            answer = {
                "ok": False,
                "code": 2,
                "error": f"internal error: {type(err).__name__}: {err}",
            }
        with contextlib.suppress(OSError):
            self.wfile.write(json.dumps(answer).encode() + b"\n")
            self.wfile.flush()


class Server(socketserver.ThreadingUnixStreamServer):
    """The control socket: one JSON request per connection, answered by `daemon.handle`."""

    daemon_threads = True

    def __init__(self, path: str, daemon: Handles):
        self.daemon = daemon
        super().__init__(path, _Handler)


class Inspectable(Protocol):
    network: Network

    def status(self) -> dict[str, Any]: ...
    def find_pod(self, name: str, namespace: str | None) -> Pod: ...
    def exec_spec(
        self,
        name: str,
        namespace: str | None,
        container_name: str | None,
        program: str,
        args: list[str],
    ) -> dict[str, Any]: ...


def read_request(daemon: Inspectable, request: dict[str, Any]) -> dict[str, Any] | None:
    """The answer to the requests both daemons serve alike (ping, status, exec_spec, kill);
    None for any other."""
    op = request.get("op")
    ns = request.get("namespace")
    if op == "ping":
        return {"pid": os.getpid(), "subnet": daemon.network.subnet}
    if op == "status":
        return {"status": daemon.status()}
    if op == "exec_spec":
        return {
            "spec": daemon.exec_spec(
                str(request["pod"]),
                ns,
                request.get("container"),
                str(request.get("program", "etcdctl")),
                list(request.get("args") or []),
            )
        }
    if op == "kill":
        pod = daemon.find_pod(str(request["pod"]), ns)
        try:
            killed = pod.signal(
                request.get("container"), int(request.get("signal", signal.SIGTERM))
            )
        except LookupError as err:
            raise SandboxError(str(err), 1) from err
        return {"container": killed}
    return None


class Serving(Handles, Protocol):
    exit_now: threading.Event

    def shutdown_then_exit(self) -> None: ...


def serve(
    state: StateDir,
    daemon: Serving,
    start: Callable[[], None],
    failed_start: Callable[[], None] = lambda: None,
) -> int:
    """Start `daemon`, then answer on the control socket until it asks to exit. A failed start
    is written to `daemon.error` for the command that spawned it."""
    error_file = state.root / "daemon.error"
    with contextlib.suppress(FileNotFoundError):
        error_file.unlink()
    try:
        start()
    except (SandboxError, AddressInUse, OSError) as err:
        write_json(error_file, {"code": getattr(err, "code", 2), "error": str(err)})
        failed_start()
        return 2
    socket_path = state.socket
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()
    server = Server(str(socket_path), daemon)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(
            signum,
            lambda *_: threading.Thread(target=daemon.shutdown_then_exit, daemon=True).start(),
        )
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    ).start()
    state.daemon_pid.write_text(f"{os.getpid()}\n")
    daemon.exit_now.wait()
    time.sleep(0.1)  # let the answer to `shutdown` leave
    server.shutdown()
    server.server_close()
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()
    with contextlib.suppress(FileNotFoundError):
        state.daemon_pid.unlink()
    return 0


def log_event(lock: threading.Lock, message: str) -> None:
    """One line of the daemon log, stamped HH:MM:SS.mmm."""
    with lock:
        now = time.time()
        stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
        print(f"{stamp} {message}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etcd_chart.sandbox.daemon")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--subnet")
    args = parser.parse_args(argv)
    state = StateDir(args.state_dir)
    daemon = Daemon(state.root, args.namespace, args.subnet)
    return serve(state, daemon, daemon.start)


if __name__ == "__main__":
    sys.exit(main())
