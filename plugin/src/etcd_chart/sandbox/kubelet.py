"""The sandbox's kubelet: it serves three Nodes of the real control plane and runs the Pods the
scheduler binds to them as local processes (see runtime.py for how a pod runs).

Per Node, with that Node's own credentials (`system:node:NAME`, so the Node authorizer and the
NodeRestriction admission plugin check every call as they would a real kubelet's):
- registers the Node (hostname and zone labels, capacity, Ready) and renews its Lease;
- lists and watches the Pods with `spec.nodeName=NAME`, starts the new ones, and on a graceful
  delete stops the containers (SIGTERM, SIGKILL after the grace period) and then removes the Pod
  with grace period 0, as the kubelet does;
- writes each pod's status through the `status` subresource whenever it changes;
- fills ConfigMap, Secret, downward API and projected volumes from the API (ServiceAccount tokens
  through TokenRequest, bound to the pod) and refreshes them while the pod runs, so a renewed
  certificate reaches a running member; persistent volumes are the directories the sandbox's
  local provisioner made for the bound PersistentVolume.

Faults the sandbox adds (`etcd-chart sandbox stop/start`, `stop-all/start-all`): a held pod
name (also one the StatefulSet has not created yet, and again after it recreates the pod) keeps
its API object but its containers stay stopped until released, like a node whose runtime is down.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from etcd_chart.sandbox import podspec, podstatus
from etcd_chart.sandbox.kubeapi import (
    RETRY_CAP,
    RETRY_FIRST,
    ApiError,
    Credentials,
    KubeApi,
    informer,
)
from etcd_chart.sandbox.runtime import Pod
from etcd_chart.sandbox.state import StateDir

LEASE_SECONDS = 40
LEASE_RENEW = 10.0
STATUS_TICK = 0.1
VOLUME_REFRESH = 3.0
TOKEN_REFRESH_FRACTION = 0.8


@dataclass(frozen=True)
class NodeSpec:
    name: str
    zone: str


# The shape of the sandbox's cluster, chosen at `up`: Nodes, zones, and the PodSecurity level the
# release namespace enforces (the first is the default).
DEFAULT_NODES = 3
ZONES = 3
POD_SECURITY_LEVELS = ("restricted", "baseline", "privileged")


def node_specs(count: int) -> list[NodeSpec]:
    """sandbox-node-a, -b, ... spread over three zones (sandbox-zone-a..c), as a regional
    cluster's nodes are."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [
        NodeSpec(f"sandbox-node-{letters[i]}", f"sandbox-zone-{letters[i % ZONES]}")
        for i in range(count)
    ]


class Machine(Protocol):
    """What the nodes share: the state dir, tools, addresses, and the sandbox's event log."""

    state: StateDir
    tools: podspec.Tools

    def address_for(self, key: str) -> str: ...
    def release_address(self, key: str) -> None: ...
    def host_ip(self) -> str: ...
    def api_info(self) -> podspec.ApiInfo: ...
    def ensure_mountpoints(self, mounts: list[podspec.Mount]) -> None: ...
    def record_process(self, key: str, pid: int) -> None: ...
    def forget_process(self, key: str) -> None: ...
    def changed(self) -> None: ...
    def event(self, message: str) -> None: ...
    def is_held(self, key: str) -> bool: ...


@dataclass
class _Entry:
    """One API pod on this node: its latest object, its runtime pod, what was last reported."""

    obj: dict[str, Any]
    pod: Pod | None = None
    last_pod: Pod | None = None  # the stopped runtime pod of a held entry, for its status
    sent: Any = None
    last_status: dict[str, Any] = field(default_factory=dict)
    start_time: str = ""
    finished: bool = False
    deleted: bool = False


def pod_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{name}"


class Node:
    """One Node and the pods bound to it; implements runtime.Host for those pods."""

    def __init__(self, machine: Machine, spec: NodeSpec, credentials: Credentials):
        self.machine = machine
        self.spec = spec
        self.name = spec.name
        self.api = KubeApi(credentials)
        self.state = machine.state
        self.tools = machine.tools
        self.lock = threading.RLock()
        self.entries: dict[str, _Entry] = {}  # by pod uid
        self.kicked = threading.Event()
        self.stop = threading.Event()
        # One status report at a time: the status loop and a pod's end both report, and a report
        # computed before the pod failed must not reach the API after the one saying it failed.
        self._reporting = threading.Lock()
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self.all_stopped = False  # `stop-all`: no container runs until `start-all`
        self._threads: list[threading.Thread] = []

    # --- runtime.Host ---------------------------------------------------------------------------

    def api_info(self) -> podspec.ApiInfo:
        return self.machine.api_info()

    def lookup(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        plural = {"ConfigMap": "configmaps", "Secret": "secrets"}[kind]
        path = f"/api/v1/namespaces/{namespace}/{plural}/{name}"
        return self._get_for_pod(path, f"{kind} {namespace}/{name}")

    def _get_for_pod(self, path: str, what: str) -> dict[str, Any] | None:
        try:
            return self.api.get(path)
        except ApiError as err:
            # The Node authorizer lets a node read only what its pods reference; its graph can
            # lag a just-bound pod by a moment: the pod retries, as a kubelet's volume mount does.
            raise podspec.MissingObject(f"{what}: {err}") from err

    def claim_path(self, namespace: str, claim: str) -> Path:
        pvc = self._get_for_pod(
            f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}",
            f"PersistentVolumeClaim {namespace}/{claim}",
        )
        volume = str(((pvc or {}).get("spec") or {}).get("volumeName") or "")
        if not volume:
            raise podspec.MissingObject(
                f"PersistentVolumeClaim {namespace}/{claim} is "
                + ("not bound yet" if pvc else "missing")
            )
        pv = (
            self._get_for_pod(f"/api/v1/persistentvolumes/{volume}", f"PersistentVolume {volume}")
            or {}
        )
        source = (pv.get("spec") or {}).get("local") or (pv.get("spec") or {}).get("hostPath")
        if not source or not source.get("path"):
            raise podspec.Unsupported(
                f"PersistentVolume {volume} has no local or hostPath directory"
            )
        return Path(str(source["path"]))

    def token(self, ctx: podspec.PodContext, audience: str, seconds: int) -> str:
        account = str(ctx.spec.get("serviceAccountName") or "default")
        key = (ctx.uid, account, audience, str(seconds))
        cached = self._tokens.get(key)
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else None,
                "expirationSeconds": seconds,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": ctx.name,
                    "uid": ctx.uid,
                },
            },
        }
        path = f"/api/v1/namespaces/{ctx.namespace}/serviceaccounts/{account}/token"
        try:
            answer = self.api.call("POST", path, body)
        except ApiError as err:
            raise podspec.MissingObject(f"token for ServiceAccount {account}: {err}") from err
        issued = str(answer["status"]["token"])
        lifetime = int(answer["spec"].get("expirationSeconds") or seconds)
        self._tokens[key] = (issued, time.monotonic() + lifetime * TOKEN_REFRESH_FRACTION)
        return issued

    def ensure_mountpoints(self, mounts: list[podspec.Mount]) -> None:
        self.machine.ensure_mountpoints(mounts)

    def record_process(self, key: str, pid: int) -> None:
        self.machine.record_process(key, pid)

    def forget_process(self, key: str) -> None:
        self.machine.forget_process(key)

    def changed(self) -> None:
        self.kicked.set()
        self.machine.changed()

    def event(self, message: str) -> None:
        self.machine.event(f"{self.name}: {message}")

    def pod_gone(self, pod: Pod) -> None:
        with self.lock:
            entry = self.entries.get(pod.uid)
            if entry is None or entry.pod is not pod:
                return
            entry.pod = None
            entry.last_pod = pod if self.kept_down(entry) else None
            if not self.kept_down(entry) and not entry.deleted and not _deleting(entry.obj):
                entry.finished = pod.phase in ("Succeeded", "Failed")
                if not entry.finished:
                    pod.phase = "Failed"
                    entry.finished = True
        self._report(entry, pod)
        if _deleting(entry.obj) or entry.deleted:
            self._remove(entry)
        self.event(f"pod {pod.key}: containers stopped")
        self.changed()

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        self.register()
        for target, name in (
            (self._watch_pods, "pods"),
            (self._heartbeat, "lease"),
            (self._status_loop, "status"),
            (self._refresh_loop, "volumes"),
        ):
            thread = threading.Thread(target=target, name=f"{self.name}-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def shutdown(self, timeout: float) -> None:
        """Stop every container (the pods stay in the API, as on a node that goes down)."""
        self.stop.set()
        self.stop_all(timeout)

    def register(self) -> None:
        address = self.machine.host_ip()
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "topology.kubernetes.io/zone": self.spec.zone,
                },
            },
        }
        status, answer = self.api.request("POST", "/api/v1/nodes", node)
        if status not in (201, 409):
            raise ApiError(status, f"registering Node {self.name}: {answer}")
        capacity = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
        now = podstatus.rfc3339(time.time())
        self.api.call(
            "PATCH",
            f"/api/v1/nodes/{self.name}/status",
            {
                "status": {
                    "capacity": capacity,
                    "allocatable": capacity,
                    "addresses": [
                        {"type": "InternalIP", "address": address},
                        {"type": "Hostname", "address": self.name},
                    ],
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "KubeletReady",
                            "message": "the etcd-chart sandbox's process kubelet is serving",
                            "lastHeartbeatTime": now,
                            "lastTransitionTime": now,
                        }
                    ],
                    "nodeInfo": {
                        "kubeletVersion": "v1.37.0-sandbox",
                        "containerRuntimeVersion": "sandbox://processes",
                        "operatingSystem": "linux",
                        "architecture": "amd64",
                        "osImage": "etcd-chart sandbox",
                        "kernelVersion": "",
                        "kubeProxyVersion": "",
                        "machineID": "",
                        "systemUUID": "",
                        "bootID": "",
                    },
                }
            },
            content_type="application/strategic-merge-patch+json",
        )

    def _heartbeat(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.name}"
        while not self.stop.is_set():
            now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": "kube-node-lease"},
                "spec": {
                    "holderIdentity": self.name,
                    "leaseDurationSeconds": LEASE_SECONDS,
                    "renewTime": now,
                },
            }
            with contextlib.suppress(OSError, ApiError):
                status, _ = self.api.request(
                    "PATCH",
                    path,
                    {"spec": lease["spec"]},
                    content_type="application/merge-patch+json",
                )
                if status == 404:
                    self.api.request(
                        "POST",
                        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                        lease,
                    )
                self._node_heartbeat()
            self.stop.wait(LEASE_RENEW)

    def _node_heartbeat(self) -> None:
        now = podstatus.rfc3339(time.time())
        self.api.request(
            "PATCH",
            f"/api/v1/nodes/{self.name}/status",
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "KubeletReady",
                            "lastHeartbeatTime": now,
                        }
                    ]
                }
            },
            content_type="application/strategic-merge-patch+json",
        )

    # --- pods ------------------------------------------------------------

    def _watch_pods(self) -> None:
        informer(
            self.api,
            "/api/v1/pods",
            {"fieldSelector": f"spec.nodeName={self.name}"},
            self._on_pod,
            self.stop,
            lambda message: self.event(f"watch: {message}"),
        )

    def _on_pod(self, kind: str, obj: dict[str, Any]) -> None:
        uid = str(obj["metadata"]["uid"])
        with self.lock:
            entry = self.entries.get(uid)
            if kind == "DELETED":
                if entry is not None:
                    entry.deleted = True
                    entry.obj = obj
                    if entry.pod is not None:
                        entry.pod.delete()
                    else:
                        self._forget(entry)
                return
            if entry is None:
                entry = self.entries[uid] = _Entry(
                    obj=obj, start_time=podstatus.rfc3339(time.time())
                )
                if _phase(obj) in ("Succeeded", "Failed"):
                    entry.finished = True
            entry.obj = obj
            self._sync(entry)

    def _sync(self, entry: _Entry) -> None:
        if _deleting(entry.obj):
            if entry.pod is not None:
                entry.pod.delete()
            else:
                threading.Thread(target=self._remove, args=(entry,), daemon=True).start()
            return
        if entry.pod is None and not self.kept_down(entry) and not entry.finished:
            self._start_pod(entry)

    def _start_pod(self, entry: _Entry) -> None:
        obj = entry.obj
        meta = obj["metadata"]
        spec = obj.get("spec") or {}
        name, namespace = str(meta["name"]), str(meta["namespace"])
        key = f"{namespace}/{name}"
        owners = meta.get("ownerReferences") or [{}]
        labels = meta.get("labels") or {}
        index = labels.get("apps.kubernetes.io/pod-index")
        pod = Pod(
            host=self,
            name=name,
            namespace=namespace,
            owner=f"{owners[0].get('kind', 'Pod')}/{owners[0].get('name', name)}",
            template=obj,
            address=self.machine.address_for(key),
            revision=str(labels.get("controller-revision-hash", "")),
            ordinal=int(index) if index is not None and str(index).isdigit() else None,
            hostname=str(spec.get("hostname") or name),
            subdomain=str(spec.get("subdomain") or ""),
            uid=str(meta["uid"]),
            node_name=self.name,
        )
        entry.pod = pod
        self.event(f"pod {key}: starting at {pod.address}")
        pod.start()
        self.changed()

    def _remove(self, entry: _Entry) -> None:
        """The final delete of a pod whose containers have stopped (grace period 0, this uid)."""
        meta = entry.obj["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": meta["uid"]},
        }
        delay = RETRY_FIRST
        # Until the API takes it: a pod left terminating blocks its StatefulSet for good (the
        # controller waits for the name to be free), and no later event would bring it back here.
        while not self.stop.is_set():
            try:
                status, _ = self.api.request(
                    "DELETE", pod_path(meta["namespace"], meta["name"]), body
                )
            except (OSError, ApiError) as err:
                self.event(f"pod {meta['namespace']}/{meta['name']}: delete: {err}; retrying")
            else:
                if status in (200, 202, 404, 409):
                    break
                self.event(f"pod {meta['namespace']}/{meta['name']}: delete: HTTP {status}")
            self.stop.wait(delay)
            delay = min(delay * 2, RETRY_CAP)
        with self.lock:
            self._forget(entry)

    def _forget(self, entry: _Entry) -> None:
        meta = entry.obj["metadata"]
        uid = str(meta["uid"])
        if self.entries.get(uid) is entry:
            del self.entries[uid]
        self._tokens = {k: v for k, v in self._tokens.items() if k[0] != uid}
        owners = meta.get("ownerReferences") or [{}]
        if owners[0].get("kind") != "StatefulSet":
            self.machine.release_address(f"{meta['namespace']}/{meta['name']}")
        self.changed()

    # --- status ------------------------------------------------------------

    def _status_loop(self) -> None:
        while not self.stop.is_set():
            self.kicked.wait(1.0)
            self.kicked.clear()
            with self.lock:
                work = [(e, e.pod or e.last_pod) for e in self.entries.values()]
            for entry, pod in work:
                if pod is not None:
                    self._report(entry, pod)
            self.stop.wait(STATUS_TICK)

    def _report(self, entry: _Entry, pod: Pod | None) -> None:
        with self._reporting:
            self._report_now(entry, pod)

    def _report_now(self, entry: _Entry, pod: Pod | None) -> None:
        if pod is None or entry.deleted:
            return
        status = podstatus.pod_status(pod, entry.obj, self.machine.host_ip(), self.kept_down(entry))
        summary = podstatus.comparable(status)
        if summary == entry.sent:
            return
        status = podstatus.with_transition_times(status, entry.last_status, entry.start_time)
        meta = entry.obj["metadata"]
        try:
            self.api.patch(
                pod_path(meta["namespace"], meta["name"]) + "/status", {"status": status}
            )
        except (OSError, ApiError) as err:
            if getattr(err, "status", 0) != 404:
                self.event(f"pod {pod.key}: status update failed: {err}")
            return
        entry.sent = summary
        entry.last_status = status

    def _refresh_loop(self) -> None:
        while not self.stop.wait(VOLUME_REFRESH):
            with self.lock:
                pods = [e.pod for e in self.entries.values() if e.pod is not None]
            for pod in pods:
                if not pod.deleting and pod.phase == "Running":
                    with contextlib.suppress(Exception):
                        pod.refresh_volumes()

    # --- faults ------------------------------------------------------------

    def find(self, namespace: str, name: str) -> _Entry | None:
        with self.lock:
            for entry in self.entries.values():
                meta = entry.obj["metadata"]
                if meta["name"] == name and meta["namespace"] == namespace and not entry.deleted:
                    return entry
        return None

    def stop_entry(self, entry: _Entry, timeout: float) -> None:
        """Stop the containers of a pod whose name the machine now holds."""
        with self.lock:
            pod = entry.pod
        if pod is not None:
            pod.delete()
            pod.wait_gone(timeout)

    def held(self, entry: _Entry) -> bool:
        meta = entry.obj["metadata"]
        return self.machine.is_held(f"{meta['namespace']}/{meta['name']}")

    def kept_down(self, entry: _Entry) -> bool:
        return self.held(entry) or self.all_stopped

    def stop_all(self, timeout: float) -> None:
        with self.lock:
            self.all_stopped = True
            pods = [e.pod for e in self.entries.values() if e.pod is not None]
        for pod in pods:
            pod.delete()
        deadline = time.monotonic() + timeout
        for pod in pods:
            pod.wait_gone(max(deadline - time.monotonic(), 0.1))

    def start_all(self) -> None:
        with self.lock:
            self.all_stopped = False
            for entry in list(self.entries.values()):
                if not self.held(entry):
                    entry.last_pod = None
                    self._sync(entry)

    def released(self, key: str) -> None:
        """The machine released `key`: start its pod, unless everything is stopped."""
        with self.lock:
            for entry in list(self.entries.values()):
                meta = entry.obj["metadata"]
                if f"{meta['namespace']}/{meta['name']}" == key and not self.kept_down(entry):
                    entry.last_pod = None
                    self._sync(entry)


def _deleting(obj: dict[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def _phase(obj: dict[str, Any]) -> str:
    return str((obj.get("status") or {}).get("phase") or "")
