"""The sandbox daemon: one detached process per state dir that runs the real control plane
(etcd, kube-apiserver, kube-controller-manager, kube-scheduler, and cert-manager when asked), the
local volume provisioner, and the process kubelet of its Nodes; controlled over
`STATE/control.sock` with JSON-line requests (serving.py: `status`, `kill`, `restart`,
`stop_pod`, `start_pod`, `lose_volume`, `stop_all`, `start_all`, `exec_spec`, `wait_ready`,
`shutdown`).

The release itself is installed by real Helm against `STATE/kubeconfig` (command.py runs it);
this process only keeps the cluster running and answers for the pods it runs.

Started as `python -m etcd_chart.sandbox.cluster --state-dir DIR [--cert-manager]
[--storage-class NAME ...]`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from etcd_chart.kubedns import service_names
from etcd_chart.sandbox import podspec, voters
from etcd_chart.sandbox.controlplane import (
    ControlPlane,
    ControlPlaneError,
    find_binaries,
    write_kubeconfig,
)
from etcd_chart.sandbox.kubeapi import ApiError, Credentials, KubeApi, informer
from etcd_chart.sandbox.kubelet import (
    DEFAULT_NODES,
    POD_SECURITY_LEVELS,
    Node,
    node_specs,
    pod_path,
)
from etcd_chart.sandbox.network import HostEntry, Network, pod_names
from etcd_chart.sandbox.provisioner import LocalProvisioner
from etcd_chart.sandbox.runtime import GRACE_CAP, Pod, tail
from etcd_chart.sandbox.serving import (
    SandboxError,
    client_info,
    ensure_mountpoints,
    log_event,
    pod_exec_spec,
    read_request,
    remove_mountpoints,
    run_launch_spec,
    serve,
    unshare_works,
)
from etcd_chart.sandbox.state import ProcessRecord, StateDir, kill_recorded, read_json, write_json


def pod_security_labels(level: str) -> dict[str, str]:
    return {
        "pod-security.kubernetes.io/enforce": level,
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/warn": level,
    }


READY_OWNERS = ("StatefulSet/", "ReplicaSet/")
ROOT_PASSWORD_VOLUME = "auth-root"  # chart/templates/_helpers.tpl, etcd.authVolumes


class Cluster:
    """The control plane, the provisioner, the Nodes, the names pods resolve, the status file."""

    def __init__(
        self,
        state_dir: Path,
        namespace: str,
        subnet: str | None,
        cert_manager: bool,
        storage_classes: list[str],
        pod_security: str = "restricted",
        nodes: int = DEFAULT_NODES,
    ):
        self.node_count = nodes
        self.storage_classes = storage_classes
        self.pod_security = pod_security
        self.state = StateDir(state_dir)
        self.namespace = namespace
        self.cert_manager = cert_manager
        self.tools = podspec.Tools()
        self.network = Network(self.state.network, self.state.hosts, subnet)
        self.records = ProcessRecord(self.state.processes)
        self.lock = threading.RLock()
        self.mount_lock = threading.Lock()
        self.kicked = threading.Event()
        self.stopping = threading.Event()
        self.stopped = threading.Event()
        self.exit_now = threading.Event()
        self._log_lock = threading.Lock()
        self.plane: ControlPlane | None = None
        self.admin: KubeApi | None = None
        self.nodes: list[Node] = []
        self.provisioner: LocalProvisioner | None = None
        self.objects: dict[str, dict[str, dict[str, Any]]] = {"statefulsets": {}, "services": {}}
        self._api_info: podspec.ApiInfo | None = None
        self._last_status: dict[str, Any] = {}
        self.release: dict[str, Any] = read_json(self.state.release, {}) or {}
        self.held: set[str] = set()  # NS/POD kept down by `stop` until `start`

    # --- kubelet.Machine -----------------------------------------------------------------------

    def address_for(self, key: str) -> str:
        with self.lock:
            return self.network.address_for(key)

    def release_address(self, key: str) -> None:
        with self.lock:
            self.network.release(key)

    def host_ip(self) -> str:
        return self.network.api_address

    def api_info(self) -> podspec.ApiInfo:
        assert self._api_info is not None
        return self._api_info

    def ensure_mountpoints(self, mounts: list[podspec.Mount]) -> None:
        ensure_mountpoints(self.state, self.mount_lock, mounts)

    def record_process(self, key: str, pid: int) -> None:
        self.records.add(key, pid)

    def forget_process(self, key: str) -> None:
        self.records.remove(key)

    def changed(self) -> None:
        self.kicked.set()

    def is_held(self, key: str) -> bool:
        return key in self.held

    def event(self, message: str) -> None:
        log_event(self._log_lock, message)

    # --- start and stop ------------------------------------------------------------

    def start(self, bin_dir: str | None) -> None:
        problem = unshare_works()
        if problem:
            raise SandboxError(
                f"cannot create mount namespaces with `unshare --mount` ({problem}); the sandbox "
                "needs root or unprivileged user namespaces",
                2,
            )
        self.tools.set_bin_dir(bin_dir)
        self.network.choose(self.state.root)
        etcd = _newest_etcd(self.tools)
        try:
            binaries = find_binaries(etcd, bin_dir, cert_manager=self.cert_manager)
        except ControlPlaneError as err:
            raise SandboxError(str(err), 2) from err
        plane = ControlPlane(
            self.state.root / "control-plane",
            self.network.api_address,
            binaries,
            on_start=self.record_process,
            on_stop=self.forget_process,
        )
        self.plane = plane
        try:
            plane.start(timeout=180)
        except ControlPlaneError as err:
            raise SandboxError(f"the control plane did not start: {err}", 2) from err
        pki = plane.pki
        write_kubeconfig(
            self.state.kubeconfig,
            plane.server,
            pki.ca,
            pki.path("admin.crt"),
            pki.path("admin.key"),
            "admin",
        )
        self.admin = KubeApi(
            Credentials(plane.server, pki.ca, pki.path("admin.crt"), pki.path("admin.key"))
        )
        self._api_info = podspec.ApiInfo(
            host=self.network.api_address, port=6443, token="", ca_pem=pki.ca.read_text()
        )
        self.state.resolv_conf.write_text(
            "# written by etcd-chart sandbox: pods resolve names from /etc/hosts only\n"
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
        )
        self.write_hosts()
        self._namespace()
        self.provisioner = LocalProvisioner(
            self.admin, self.state.volumes, self.event, self.storage_classes
        )
        self.provisioner.start()
        for spec in node_specs(self.node_count):
            cert = pki.path(f"node-{spec.name}.crt")
            if not cert.exists():
                pki.issue_client(f"node-{spec.name}", f"system:node:{spec.name}", ["system:nodes"])
            node = Node(
                self,
                spec,
                Credentials(plane.server, pki.ca, cert, pki.path(f"node-{spec.name}.key")),
            )
            node.start()
            self.nodes.append(node)
        for plural, path in (
            ("statefulsets", "/apis/apps/v1/statefulsets"),
            ("services", "/api/v1/services"),
        ):
            threading.Thread(
                target=informer,
                args=(
                    self.admin,
                    path,
                    {},
                    self._stored(plural),
                    self.stopping,
                    lambda message: self.event(f"watch: {message}"),
                ),
                daemon=True,
                name=f"watch-{plural}",
            ).start()
        threading.Thread(target=self._loop, name="status", daemon=True).start()
        self.event(
            f"cluster {os.getpid()}: subnet {self.network.subnet}.0/24, API {plane.server}, "
            f"nodes {', '.join(n.name for n in self.nodes)}"
        )

    def _namespace(self) -> None:
        assert self.admin is not None
        labels = pod_security_labels(self.pod_security)
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": self.namespace, "labels": labels},
        }
        status, _ = self.admin.request("POST", "/api/v1/namespaces", body)
        if status == 409:
            self.admin.patch(
                f"/api/v1/namespaces/{self.namespace}", {"metadata": {"labels": labels}}
            )
        if self.pod_security != "privileged":
            self._wait_pod_security()

    def _wait_pod_security(self, timeout: float = 30.0) -> None:
        """Until the PodSecurity admission enforces the level: it reads namespace labels from an
        informer, so pods created right after a label change (e.g. on the existing `default`
        namespace) could be admitted under the old labels. A dry-run pod with hostNetwork, which
        baseline and restricted refuse, shows when the level holds."""
        assert self.admin is not None
        probe = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "pod-security-probe"},
            "spec": {"hostNetwork": True, "containers": [{"name": "probe", "image": "probe"}]},
        }
        path = f"/api/v1/namespaces/{self.namespace}/pods?dryRun=All"
        deadline = time.monotonic() + timeout
        while True:
            status, answer = self.admin.request("POST", path, probe)
            if status == 403 and "violates PodSecurity" in str(answer):
                return
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"namespace {self.namespace}: PodSecurity {self.pod_security} is not enforced "
                    f"after {timeout:.0f} s (a probe pod got HTTP {status})",
                    2,
                )
            time.sleep(0.1)

    def _stored(self, plural: str) -> Any:
        def handle(kind: str, obj: dict[str, Any]) -> None:
            uid = str(obj["metadata"]["uid"])
            with self.lock:
                if kind == "DELETED":
                    self.objects[plural].pop(uid, None)
                else:
                    self.objects[plural][uid] = obj
            self.changed()

        return handle

    def _loop(self) -> None:
        while not self.stopped.is_set():
            self.kicked.wait(0.25)
            self.kicked.clear()
            with contextlib.suppress(Exception):
                self.write_hosts()
                status = self.status()
                if status != self._last_status:
                    write_json(self.state.status, status)
                    self._last_status = status

    def shutdown(self) -> None:
        self.stopping.set()
        for node in self.nodes:
            node.shutdown(GRACE_CAP + 10)
        if self.provisioner is not None:
            self.provisioner.stop.set()
        self.stopped.set()
        if self.plane is not None:
            self.plane.stop()
        kill_recorded(self.records, grace=2)
        with self.mount_lock:
            remove_mountpoints(self.state)
        self.network.remove_routes()
        status = self.status()
        status["running"] = False
        write_json(self.state.status, status)
        self.event("cluster: stopped")

    def shutdown_then_exit(self) -> None:
        if self.stopping.is_set():
            return
        try:
            self.shutdown()
        finally:
            self.exit_now.set()

    # --- names and status ------------------------------------------------------------

    def pods(self) -> list[tuple[Node, Pod]]:
        found = []
        for node in self.nodes:
            with node.lock:
                for entry in node.entries.values():
                    pod = entry.pod or entry.last_pod
                    if pod is not None:
                        found.append((node, pod))
        return found

    def _domain(self) -> str:
        return str(self.release.get("cluster_domain") or "cluster.local")

    def write_hosts(self) -> None:
        domain = self._domain()
        entries = [
            HostEntry(self.network.api_address, service_names("kubernetes", "default", domain))
        ]
        names: dict[str, list[str]] = {}
        pods = [pod for _, pod in self.pods()]  # before self.lock: a node calls in holding its own
        with self.lock:
            for sts in self.objects["statefulsets"].values():
                meta, spec = sts["metadata"], sts.get("spec") or {}
                for ordinal in range(int(spec.get("replicas", 1))):
                    pod_name = f"{meta['name']}-{ordinal}"
                    key = f"{meta['namespace']}/{pod_name}"
                    self.network.address_for(key)
                    names[key] = pod_names(
                        pod_name, str(spec.get("serviceName") or ""), meta["namespace"], domain
                    )
            for pod in pods:
                names[pod.key] = pod_names(pod.name, pod.subdomain, pod.namespace, domain)
            for key in sorted(
                names,
                key=lambda k: tuple(int(x) for x in self.network.address_for(k).split(".")),
            ):
                entries.append(HostEntry(self.network.addresses[key], names[key]))
            for service in self.objects["services"].values():
                meta, spec = service["metadata"], service.get("spec") or {}
                selector = spec.get("selector") or {}
                if spec.get("clusterIP") == "None" or not selector:
                    continue
                chosen = sorted(
                    (
                        p
                        for p in pods
                        if p.namespace == meta["namespace"]
                        and all(p.labels.get(k) == str(v) for k, v in selector.items())
                    ),
                    key=lambda p: (not p.ready, p.name),
                )
                if chosen:
                    entries.append(
                        HostEntry(
                            chosen[0].address,
                            service_names(meta["name"], meta["namespace"], domain),
                        )
                    )
        self.network.write_hosts(entries)

    def status(self) -> dict[str, Any]:
        pods = []
        for node, pod in sorted(
            self.pods(), key=lambda np: (np[1].namespace, np[1].owner, np[1].ordinal or 0)
        ):
            entry = pod.status()
            entry["node"] = node.name
            with node.lock:
                held = any(node.kept_down(e) and e.last_pod is pod for e in node.entries.values())
            if held:
                entry["phase"] = "Stopped"
            entry.update(client_info(pod))
            pods.append(entry)
        workloads = []
        with self.lock:
            for sts in self.objects["statefulsets"].values():
                meta, spec = sts["metadata"], sts.get("spec") or {}
                st = sts.get("status") or {}
                replicas = int(spec.get("replicas", 1))
                workloads.append(
                    {
                        "kind": "StatefulSet",
                        "name": meta["name"],
                        "namespace": meta["namespace"],
                        "replicas": replicas,
                        "ready_pods": int(st.get("readyReplicas") or 0),
                        "ready": _statefulset_ready(sts),
                        "paused": False,
                    }
                )
        plane = self.plane
        return {
            "running": not self.stopped.is_set(),
            "pid": os.getpid(),
            "state_dir": str(self.state.root),
            "subnet": self.network.subnet,
            "cluster_domain": self._domain(),
            "api": {
                "url": plane.server if plane else None,
                "ca_file": str(plane.pki.ca) if plane else None,
                "kubeconfig": str(self.state.kubeconfig),
            },
            "release": {k: self.release.get(k) for k in ("name", "namespace")},
            "pods": pods,
            "workloads": workloads,
            # Member pods and Deployment pods (the web UI); a hook Job's pods complete instead.
            "ready": all(w["ready"] for w in workloads)
            and all(p["ready"] for p in pods if p["owner"].startswith(READY_OWNERS)),
        }

    # --- operations ------------------------------------------------------------

    def find(self, name: str, namespace: str | None) -> tuple[Node, Any]:
        found = []
        for node in self.nodes:
            with node.lock:
                for entry in node.entries.values():
                    meta = entry.obj["metadata"]
                    if (
                        meta["name"] == name
                        and (not namespace or meta["namespace"] == namespace)
                        and not entry.deleted
                    ):
                        found.append((node, entry))
        if not found:
            running = sorted(pod.name for _, pod in self.pods())
            raise SandboxError(
                f"no pod {name!r} runs in the sandbox; pods: {', '.join(running) or 'none'}", 1
            )
        if len({e.obj["metadata"]["namespace"] for _, e in found}) > 1:
            raise SandboxError(f"pod name {name!r} is in several namespaces; pass --namespace", 1)
        return found[-1]

    def find_pod(self, name: str, namespace: str | None) -> Pod:
        node, entry = self.find(name, namespace)
        if entry.pod is None:
            state = (
                f"stopped; `start {name}` brings it back"
                if node.held(entry)
                else "stopped (stop-all); `start-all` brings every pod back"
                if node.all_stopped
                else "not running"
            )
            raise SandboxError(f"pod {name!r} is {state}", 1)
        pod: Pod = entry.pod
        return pod

    def exec_spec(
        self,
        name: str,
        namespace: str | None,
        container: str | None,
        program: str,
        args: list[str],
    ) -> dict[str, Any]:
        return pod_exec_spec(
            self.find_pod(name, namespace),
            container,
            program,
            args,
            self.tools,
            self.ensure_mountpoints,
            str(self.state.hosts),
        )

    def root_password(self, name: str, namespace: str | None) -> str | None:
        """The etcd root password the chart mounts into a member pod (its `auth-root` volume), if
        the pod has one."""
        try:
            pod = self.find_pod(name, namespace)
        except SandboxError:
            return None
        with contextlib.suppress(OSError):
            return (
                (pod.dir / "volumes" / ROOT_PASSWORD_VOLUME / "password").read_text().rstrip("\r\n")
            )
        return None

    def restart(self, name: str, namespace: str | None) -> None:
        """Delete the pod through the API (gracefully) and wait for its replacement to run."""
        _, entry = self.find(name, namespace)
        meta = entry.obj["metadata"]
        assert self.admin is not None
        self.admin.request("DELETE", pod_path(meta["namespace"], meta["name"]))
        deadline = time.monotonic() + GRACE_CAP + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(SandboxError):
                _, fresh = self.find(meta["name"], meta["namespace"])
                if fresh.obj["metadata"]["uid"] != meta["uid"] and fresh.pod is not None:
                    return
            time.sleep(0.1)
        raise SandboxError(f"pod {meta['name']} was not recreated in time", 2)

    def _slot(self, name: str, namespace: str | None) -> str:
        """NS/NAME of a pod that runs, or that a StatefulSet will create."""
        with contextlib.suppress(SandboxError):
            _, entry = self.find(name, namespace)
            return f"{entry.obj['metadata']['namespace']}/{name}"
        with self.lock:
            for sts in self.objects["statefulsets"].values():
                meta = sts["metadata"]
                ordinal = name.removeprefix(f"{meta['name']}-")
                same_namespace = not namespace or meta["namespace"] == namespace
                if ordinal != name and ordinal.isdigit() and same_namespace:
                    return f"{meta['namespace']}/{name}"
        self.find(name, namespace)  # raises, naming the pods
        raise AssertionError("unreachable")

    def stop_pod(self, name: str, namespace: str | None) -> None:
        key = self._slot(name, namespace)
        self.held.add(key)
        with contextlib.suppress(SandboxError):
            node, entry = self.find(name, key.split("/")[0])
            node.stop_entry(entry, GRACE_CAP + 10)
        self.changed()

    def start_pod(self, name: str, namespace: str | None) -> None:
        key = self._slot(name, namespace)
        self.held.discard(key)
        for node in self.nodes:
            node.released(key)
        self.changed()

    def lose_volume(self, name: str, namespace: str | None, only: list[str]) -> list[str]:
        """Stop the pod, empty the directories of its claims (those made from the claim
        templates in `only`, when given), start it again (a stopped pod stays stopped)."""
        node, entry = self.find(name, namespace)
        meta = entry.obj["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        claims = [
            str((v.get("persistentVolumeClaim") or {}).get("claimName"))
            for v in (entry.obj.get("spec") or {}).get("volumes") or []
            if v.get("persistentVolumeClaim")
        ]
        templates = {claim.removesuffix(f"-{meta['name']}"): claim for claim in claims}
        unknown = sorted(set(only) - set(templates))
        if unknown:
            raise SandboxError(
                f"--claim {', '.join(unknown)}: {name} has no such claim template "
                f"(it has: {', '.join(sorted(templates)) or 'none'})"
            )
        chosen = [templates[t] for t in only] if only else claims
        paths = [node.claim_path(meta["namespace"], claim) for claim in chosen]
        was_held = key in self.held
        self.held.add(key)
        node.stop_entry(entry, GRACE_CAP + 10)
        for claim, path in zip(chosen, paths, strict=True):
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True, exist_ok=True)
            self.event(f"claim {meta['namespace']}/{claim}: its disk lost, now empty")
        if not was_held:
            self.start_pod(meta["name"], meta["namespace"])
        return chosen

    def stop_all(self) -> None:
        """Every node at once (a full outage), each stopping all its containers."""
        stopping = [
            threading.Thread(target=node.stop_all, args=(GRACE_CAP + 10,)) for node in self.nodes
        ]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()

    def start_all(self) -> None:
        for node in self.nodes:
            node.start_all()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.status()["ready"]:
            if self.stopping.is_set():
                raise SandboxError("interrupted: the sandbox is stopping", 2)
            if time.monotonic() > deadline:
                raise SandboxError(self.not_ready_report(), 2)
            time.sleep(0.1)
        with self.lock:
            sets = [
                s
                for s in self.objects["statefulsets"].values()
                if int((s.get("spec") or {}).get("replicas", 1)) > 0
            ]
        for sts in sets:
            meta = sts["metadata"]
            pods = [f"{meta['name']}-{i}" for i in range(int(sts["spec"].get("replicas", 1)))]

            def run(args: list[str], ns: str = meta["namespace"], first: str = pods[0]) -> Any:
                try:
                    spec = self.exec_spec(first, ns, None, "etcdctl", args)
                except SandboxError as problem:
                    return 1, "", str(problem)
                code, out, err = run_launch_spec(self.state.root, spec)
                if code != 0 and "user name is empty" in err:
                    # Auth on and no client certificate to name a user (password RBAC without
                    # TLS): newer etcd asks for one even to list members (3.5.30 does, 3.5.16 did
                    # not). As root, with the password the pod's agent has, as an operator would.
                    password = self.root_password(first, ns)
                    if password is not None:
                        spec["env"] = {**spec["env"], "ETCDCTL_USER": f"root:{password}"}
                        code, out, err = run_launch_spec(self.state.root, spec)
                return code, out, err

            while (found := voters.problem(run, pods)) is not None:
                if time.monotonic() > deadline:
                    raise SandboxError(
                        f"StatefulSet {meta['namespace']}/{meta['name']}: every pod is Ready, but "
                        f"the member set is not done in time: {found}",
                        2,
                    )
                time.sleep(0.5)

    def not_ready_report(self) -> str:
        lines = ["timed out waiting for every pod to be Ready"]
        status = self.status()
        for workload in status["workloads"]:
            if not workload["ready"]:
                lines.append(
                    f"{workload['kind']} {workload['namespace']}/{workload['name']}: "
                    f"{workload['ready_pods']}/{workload['replicas']} ready"
                )
                lines += [f"  {line}" for line in self._workload_report(workload)]
        for _, pod in self.pods():
            if pod.ready:
                continue
            failing = [c for c in pod.containers.values() if not c.ready and not c.finished]
            lines.append(f"  pod {pod.key}: {pod.phase} {pod.error}".rstrip())
            for container in failing:
                lines.append(f"    container {container.spec.name}:")
                lines += [f"      {line}" for line in tail(container.log, 10).splitlines()]
        lines.append("the sandbox's last events:")
        lines += [f"  {line}" for line in tail(self.state.daemon_log, 15).splitlines()]
        return "\n".join(lines)

    def _workload_report(self, workload: dict[str, Any]) -> list[str]:
        namespace = workload["namespace"]
        assert self.admin is not None
        try:
            listing = self.admin.get(f"/api/v1/namespaces/{namespace}/pods")
        except (OSError, ApiError) as err:
            return [*self._warnings(namespace, {}), f"the pods in the API: {err}"]
        api_pods = {str(p["metadata"]["name"]): p for p in (listing or {}).get("items") or []}
        return [*self._warnings(namespace, api_pods), *_api_pod_states(workload, api_pods)]

    def _warnings(self, namespace: str, api_pods: dict[str, dict[str, Any]]) -> list[str]:
        """What the control plane said went wrong, newest last: the latest Warning event of each
        object (a pod PodSecurity refused, a pod no node can take), and pods never scheduled."""
        assert self.admin is not None
        found: dict[str, str] = {}
        with contextlib.suppress(OSError, ApiError):
            events = self.admin.get(
                f"/api/v1/namespaces/{namespace}/events?fieldSelector=type%3DWarning"
            )
            for event in sorted(
                (events or {}).get("items") or [],
                key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""),
            ):
                obj = event.get("involvedObject") or {}
                if "may not be in the loopback range" in str(event.get("message")):
                    continue  # the endpoint controllers refuse the sandbox's loopback pod addresses
                found[f"{obj.get('kind')}/{obj.get('name')}"] = (
                    f"{event.get('reason')}: {event.get('message', '').strip()}"
                )
        for name, pod in api_pods.items():
            scheduled = _condition(pod, "PodScheduled")
            if scheduled and scheduled["status"] != "True":
                found.setdefault(f"Pod/{name}", f"not scheduled: {scheduled.get('message', '')}")
        return [f"{what}: {said}" for what, said in found.items()][-6:]

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        ns = request.get("namespace")
        answer = read_request(self, request)
        if answer is not None:
            return answer
        if op == "release":
            self.release = {
                "name": request.get("release"),
                "namespace": request.get("namespace"),
                "cluster_domain": request.get("cluster_domain") or "cluster.local",
            }
            write_json(self.state.release, self.release)
            self.changed()
            return {}
        if op == "shutdown":
            processes = len(self.records.entries())
            threading.Thread(target=self.shutdown_then_exit, daemon=True).start()
            return {"processes": processes}
        if self.stopping.is_set():
            raise SandboxError("the sandbox is stopping", 2)
        if op == "wait_ready":
            self.wait_ready(float(request.get("timeout", 120)))
            return {"status": self.status()}
        if op == "restart":
            self.restart(str(request["pod"]), ns)
            return {}
        if op == "stop_pod":
            self.stop_pod(str(request["pod"]), ns)
            return {}
        if op == "start_pod":
            self.start_pod(str(request["pod"]), ns)
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


def _condition(pod: dict[str, Any], kind: str) -> dict[str, Any]:
    """The pod's condition of type `kind`, as the API has it ({} when it has none)."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == kind), {})


def _api_pod_states(workload: dict[str, Any], api_pods: dict[str, dict[str, Any]]) -> list[str]:
    """Each of a StatefulSet's pods that the API does not show Ready, as the API has it: the
    controller's view, which can differ from the kubelets' (a pod never created, a deleted pod
    whose final delete never came)."""
    found = []
    for ordinal in range(int(workload["replicas"])):
        name = f"{workload['name']}-{ordinal}"
        obj = api_pods.get(name)
        if obj is None:
            found.append(f"Pod/{name} in the API: absent (not created by the controller)")
            continue
        meta = obj["metadata"]
        where = f"uid {meta['uid']}, node {(obj.get('spec') or {}).get('nodeName') or 'none'}"
        if meta.get("deletionTimestamp"):
            found.append(
                f"Pod/{name} in the API: terminating since {meta['deletionTimestamp']} ({where})"
            )
        elif _condition(obj, "Ready").get("status") != "True":
            phase = (obj.get("status") or {}).get("phase")
            found.append(f"Pod/{name} in the API: {phase}, not Ready ({where})")
    return found


def _statefulset_ready(sts: dict[str, Any]) -> bool:
    spec, status = sts.get("spec") or {}, sts.get("status") or {}
    replicas = int(spec.get("replicas", 1))
    return (
        int(status.get("observedGeneration") or 0) >= int(sts["metadata"].get("generation") or 0)
        and int(status.get("readyReplicas") or 0) == replicas
        and int(status.get("replicas") or 0) == replicas
        and int(status.get("updatedReplicas") or 0) == replicas
    )


def _newest_etcd(tools: podspec.Tools) -> str:
    for version in tools.versions():  # newest first
        found = tools.find("etcd", version)
        if found:
            return found
    raise SandboxError("no etcd binary for the control plane: run `bash ci/install-tools.sh`", 2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etcd_chart.sandbox.cluster")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--subnet")
    parser.add_argument("--bin-dir")
    parser.add_argument("--cert-manager", action="store_true")
    parser.add_argument("--storage-class", action="append", default=[])
    parser.add_argument("--pod-security", choices=POD_SECURITY_LEVELS, default="restricted")
    parser.add_argument("--nodes", type=int, default=DEFAULT_NODES)
    args = parser.parse_args(argv)
    state = StateDir(args.state_dir)
    cluster = Cluster(
        state.root,
        args.namespace,
        args.subnet,
        args.cert_manager,
        args.storage_class,
        args.pod_security,
        args.nodes,
    )

    def start() -> None:
        try:
            cluster.start(args.bin_dir)
        except ApiError as err:
            raise SandboxError(
                f"the control plane refused a request while starting: {err}", 2
            ) from err

    return serve(state, cluster, start, cluster.shutdown)


if __name__ == "__main__":
    sys.exit(main())
