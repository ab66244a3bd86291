"""The kubelet part of the sandbox: one thread per pod runs its containers and probes.

- init containers one at a time, each must exit 0; a failing one is retried with back-off
  (or fails the pod when `restartPolicy: Never`); native sidecars (init containers with
  `restartPolicy: Always`) start in their place and keep running; then every container.
- `restartPolicy: Always` restarts an exited container after a back-off of 1 s, doubling up to
  10 s (kubelet: 10 s up to 5 min; the sandbox is for finding out quickly). The back-off is reset
  once a container has run for 30 s.
- startup and readiness probes are tried every 0.1 s until they first pass, whatever
  `initialDelaySeconds` and `periodSeconds` say, so a pod is Ready as soon as it really is; the
  startup probe keeps its whole budget (`initialDelaySeconds + failureThreshold x periodSeconds`).
  After that, readiness and liveness run with the declared period and thresholds, and liveness
  failures restart the container.
- deleting a pod sends SIGTERM to its containers (then its sidecars) and SIGKILL after
  `terminationGracePeriodSeconds`, capped at 10 s in the sandbox.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from etcd_chart.sandbox import podspec
from etcd_chart.sandbox.launch import launcher_argv
from etcd_chart.sandbox.network import AddressInUse, check_pod_ports
from etcd_chart.sandbox.podspec import ContainerSpec, Probe
from etcd_chart.sandbox.state import StateDir, signal_group

BACKOFF_START = 1.0
BACKOFF_CAP = 10.0
BACKOFF_RESET_AFTER = 30.0
GRACE_CAP = 10.0
FAST_PROBE = 0.1
TICK = 0.05


class Host(Protocol):
    """What a pod needs from the daemon."""

    state: StateDir
    tools: podspec.Tools

    def api_info(self) -> podspec.ApiInfo: ...
    def lookup(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...
    def claim_path(self, namespace: str, claim: str) -> Path: ...
    def token(self, ctx: podspec.PodContext, audience: str, seconds: int) -> str: ...
    def ensure_mountpoints(self, mounts: list[podspec.Mount]) -> None: ...
    def record_process(self, key: str, pid: int) -> None: ...
    def forget_process(self, key: str) -> None: ...
    def changed(self) -> None: ...
    def event(self, message: str) -> None: ...
    def pod_gone(self, pod: Pod) -> None: ...


def tail(path: Path, lines: int = 20) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            data = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def run_probe(probe: Probe, address: str) -> bool:
    host = probe.host or address
    timeout = max(probe.timeout, 0.5)
    try:
        if probe.kind == "tcp":
            with socket.create_connection((host, probe.port), timeout=timeout):
                return True
        connection: http.client.HTTPConnection
        if probe.scheme == "HTTPS":
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            connection = http.client.HTTPSConnection(
                host, probe.port, timeout=timeout, context=context
            )
        else:
            connection = http.client.HTTPConnection(host, probe.port, timeout=timeout)
        try:
            headers = {"User-Agent": "kube-probe/sandbox", **probe.headers}
            connection.request("GET", probe.path, headers=headers)
            response = connection.getresponse()
            response.read()
            return 200 <= response.status < 400
        finally:
            connection.close()
    except (OSError, http.client.HTTPException):
        return False


@dataclass
class Container:
    spec: ContainerSpec
    log: Path
    launch_file: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started: bool = False
    ready: bool = False
    exit_code: int | None = None
    started_at: float = 0.0
    next_start: float = 0.0
    backoff: float = BACKOFF_START
    generation: int = 0
    finished: bool = False  # for containers that are not restarted any more
    reason: str = ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self) -> dict[str, Any]:
        state = (
            "running"
            if self.running
            else ("terminated" if self.finished or self.exit_code is not None else "waiting")
        )
        return {
            "role": self.spec.role,
            "state": state,
            "ready": self.ready,
            "started": self.started,
            "restarts": self.restarts,
            "pid": self.proc.pid if self.running and self.proc else None,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "log": str(self.log),
        }


@dataclass
class Pod:
    """One pod: created by a controller, run by its own thread until deleted (or, Jobs, done)."""

    host: Host
    name: str
    namespace: str
    owner: str  # "StatefulSet/etcd", "Job/x", ...
    template: dict[str, Any]
    address: str
    revision: str = ""
    ordinal: int | None = None
    hostname: str = ""
    subdomain: str = ""
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    node_name: str = "sandbox"
    phase: str = "Pending"
    error: str = ""
    containers: dict[str, Container] = field(default_factory=dict)
    created_at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self._deleting = threading.Event()
        self._done = threading.Event()
        self._lock = threading.RLock()
        self._thread = threading.Thread(target=self._run, name=f"pod-{self.name}", daemon=True)
        self.spec: dict[str, Any] = self.template.get("spec") or {}
        metadata = self.template.get("metadata") or {}
        self.labels: dict[str, str] = {
            str(k): str(v) for k, v in (metadata.get("labels") or {}).items()
        }
        self.annotations: dict[str, str] = {
            str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()
        }
        self.restart_policy = str(self.spec.get("restartPolicy") or "Always")
        grace = float(self.spec.get("terminationGracePeriodSeconds", 30))
        self.grace = min(grace, GRACE_CAP)

    # --- public -----------------------------------------------------------------------------

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def dir(self) -> Path:
        return self.host.state.pod_dir(self.namespace, self.name)

    @property
    def deleting(self) -> bool:
        return self._deleting.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def ready(self) -> bool:
        with self._lock:
            if self.phase != "Running" or self.deleting:
                return False
            serving = [c for c in self.containers.values() if c.spec.role != "init"]
            return bool(serving) and all(c.ready for c in serving)

    def start(self) -> None:
        self._thread.start()

    def delete(self) -> None:
        self._deleting.set()

    def wait_gone(self, timeout: float) -> bool:
        return self._done.wait(timeout)

    def restarts(self) -> int:
        return sum(c.restarts for c in self.containers.values())

    def main_container(self) -> Container | None:
        """The etcd container if there is one, else the first container."""
        mains = [c for c in self.containers.values() if c.spec.role == "main"]
        for container in mains:
            if container.spec.name == "etcd" or podspec.image_kind(container.spec.image) == "etcd":
                return container
        return mains[0] if mains else None

    def signal(self, container_name: str | None, signum: int) -> str:
        with self._lock:
            container = (
                self.containers.get(container_name) if container_name else self.main_container()
            )
            if container_name and container is None:
                raise LookupError(
                    f"pod {self.key} has no container {container_name!r}; its containers: "
                    + ", ".join(sorted(self.containers))
                )
            if container is None or not container.running or container.proc is None:
                raise LookupError(
                    f"pod {self.key}: container {container_name or '(main)'} is not running"
                )
            signal_group(container.proc.pid, signum)
            return container.spec.name

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "name": self.name,
                "namespace": self.namespace,
                "owner": self.owner,
                "ordinal": self.ordinal,
                "address": self.address,
                "phase": "Terminating" if self.deleting and not self.done else self.phase,
                "ready": self.ready,
                "revision": self.revision,
                "restarts": self.restarts(),
                "error": self.error,
                "containers": {name: c.status() for name, c in self.containers.items()},
            }

    def refresh_volumes(self) -> list[str]:
        """Bring ConfigMap, Secret, downward API and projected files up to date (as the kubelet
        does every sync); returns the files that changed."""
        changed = podspec.refresh_volumes(self._context(), self.dir, self._fs_group())
        for path in changed:
            self.host.event(f"pod {self.key}: updated {path}")
        return changed

    def _fs_group(self) -> int | None:
        fs_group = (self.spec.get("securityContext") or {}).get("fsGroup")
        return int(fs_group) if fs_group is not None else None

    # --- the pod's thread ---------------------------------------------------------------------

    def _context(self) -> podspec.PodContext:
        return podspec.PodContext(
            name=self.name,
            namespace=self.namespace,
            uid=self.uid,
            address=self.address,
            labels=self.labels,
            annotations=self.annotations,
            spec=self.spec,
            lookup=self.host.lookup,
            api=self.host.api_info(),
            node_name=self.node_name,
            token=self.host.token,
        )

    def _prepare(self) -> list[Container]:
        # Pods share this machine's ports: another process on the pod's address would make etcd
        # exit at start; say who is in the way instead (retried with back-off, as a kubelet
        # retries a pod it cannot create).
        check_pod_ports(self.spec, self.address, self.key)
        ctx = self._context()
        volumes = podspec.materialize_volumes(
            ctx,
            self.dir,
            lambda claim: self.host.claim_path(self.namespace, claim),
            self._fs_group(),
        )
        containers = []
        hosts = str(self.host.state.hosts)
        for role, raw in podspec.containers_of(self.spec):
            spec = podspec.build_container(ctx, role, raw, volumes, self.host.tools)
            self.host.ensure_mountpoints(spec.mounts)
            launch_file = self.dir / "launch" / f"{spec.name}.json"
            launch_file.parent.mkdir(parents=True, exist_ok=True)
            launch_file.write_text(
                json.dumps(spec.launch_spec(self.hostname or self.name, hosts), indent=1)
            )
            log = self.host.state.log_file(self.namespace, self.name, spec.name)
            log.parent.mkdir(parents=True, exist_ok=True)
            containers.append(Container(spec=spec, log=log, launch_file=launch_file))
        return containers

    def _run(self) -> None:
        try:
            self._run_inner()
        except Exception as err:  # noqa: BLE001 - a pod thread must never die silently
            self.error = f"{type(err).__name__}: {err}"
            self.host.event(f"pod {self.key}: {self.error}")
        finally:
            self._terminate_all()
            with contextlib.suppress(OSError):
                shutil.rmtree(self.dir)
            self._done.set()
            self.host.pod_gone(self)

    def _run_inner(self) -> None:
        delay = BACKOFF_START
        while True:
            try:
                containers = self._prepare()
                break
            except (
                podspec.Unsupported,
                podspec.MissingObject,
                podspec.ToolMissing,
                AddressInUse,
                OSError,
            ) as err:
                self.error = str(err)
                self.host.event(f"pod {self.key}: cannot create containers: {err}")
                self.host.changed()
                if self._deleting.wait(delay):
                    return
                delay = min(delay * 2, BACKOFF_CAP)
        self.error = ""
        with self._lock:
            self.containers = {c.spec.name: c for c in containers}
        self.phase = "Pending"
        self.host.changed()
        for container in containers:
            if self.deleting:
                return
            if container.spec.role == "init":
                if not self._run_init(container):
                    return
            elif container.spec.role == "sidecar":
                self._launch(container)
        if self.deleting:
            return
        self.phase = "Running"
        for container in containers:
            if container.spec.role == "main":
                self._launch(container)
        self.host.changed()
        self._supervise()

    def _run_init(self, container: Container) -> bool:
        while not self.deleting:
            self._launch(container)
            assert container.proc is not None
            while container.proc.poll() is None:
                if self._deleting.wait(TICK):
                    return False
            code = container.proc.returncode
            self._exited(container, code)
            if code == 0:
                container.finished = True
                container.reason = "Completed"
                self.host.changed()
                return True
            if self.restart_policy == "Never":
                self.phase = "Failed"
                container.finished = True
                self.host.changed()
                return False
            container.restarts += 1
            if self._deleting.wait(self._next_backoff(container)):
                return False
        return False

    def _next_backoff(self, container: Container) -> float:
        if time.monotonic() - container.started_at >= BACKOFF_RESET_AFTER:
            container.backoff = BACKOFF_START
        delay = container.backoff
        container.backoff = min(container.backoff * 2, BACKOFF_CAP)
        return delay

    def _launch(self, container: Container) -> None:
        with open(container.log, "ab") as log:
            proc = subprocess.Popen(  # noqa: S603 - argv built by the sandbox
                launcher_argv(str(container.launch_file)),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={"PATH": os.environ.get("PATH", podspec.IMAGE_PATH)},
            )
        with self._lock:
            container.proc = proc
            container.generation += 1
            container.started = "startup" not in container.spec.probes
            container.ready = False
            container.exit_code = None
            container.reason = ""
            container.started_at = time.monotonic()
        self.host.record_process(f"{self.key}/{container.spec.name}", proc.pid)
        if container.spec.role != "init":
            threading.Thread(
                target=self._probe_loop,
                args=(container, container.generation),
                daemon=True,
                name=f"probe-{self.name}-{container.spec.name}",
            ).start()
        self.host.changed()

    def _exited(self, container: Container, code: int) -> None:
        with self._lock:
            container.exit_code = code
            container.ready = False
            container.started = False
            container.reason = "Completed" if code == 0 else "Error"
        self.host.forget_process(f"{self.key}/{container.spec.name}")
        self.host.event(f"pod {self.key}: container {container.spec.name} exited with {code}")
        self.host.changed()

    def _supervise(self) -> None:
        workers = [c for c in self.containers.values() if c.spec.role != "init"]
        mains = [c for c in workers if c.spec.role == "main"]
        while not self._deleting.wait(TICK):
            now = time.monotonic()
            for container in workers:
                if container.finished:
                    continue
                proc = container.proc
                if proc is not None and container.exit_code is None and proc.poll() is not None:
                    code = proc.returncode
                    self._exited(container, code)
                    restart = (
                        container.spec.role == "sidecar"
                        or self.restart_policy == "Always"
                        or (self.restart_policy == "OnFailure" and code != 0)
                    )
                    if restart:
                        container.restarts += 1
                        container.next_start = now + self._next_backoff(container)
                    else:
                        container.finished = True
                elif (
                    proc is not None
                    and container.exit_code is not None
                    and now >= container.next_start
                ):
                    self._launch(container)
            if mains and all(c.finished for c in mains):
                failed = any(c.exit_code for c in mains)
                self.phase = "Failed" if failed else "Succeeded"
                self.host.changed()
                return

    def _terminate_all(self) -> None:
        groups = [
            [c for c in self.containers.values() if c.spec.role == "main"],
            [c for c in self.containers.values() if c.spec.role != "main"],
        ]
        deadline = time.monotonic() + self.grace
        for group in groups:
            running = [c for c in group if c.running]
            for container in running:
                assert container.proc is not None
                signal_group(container.proc.pid, signal.SIGTERM)
            while running and time.monotonic() < deadline:
                running = [c for c in running if c.running]
                time.sleep(TICK)
        for container in self.containers.values():
            if container.proc is not None and container.proc.poll() is None:
                signal_group(container.proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    container.proc.wait(5)
            if container.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    container.proc.wait(1)
                if container.exit_code is None and container.proc.returncode is not None:
                    container.exit_code = container.proc.returncode
            self.host.forget_process(f"{self.key}/{container.spec.name}")
            container.ready = False

    # --- probes -------------------------------------------------------------------------------

    def _probe_loop(self, container: Container, generation: int) -> None:
        probes = container.spec.probes

        def current() -> bool:
            return container.generation == generation and container.running and not self.deleting

        def sleep(seconds: float) -> bool:
            return not self._deleting.wait(seconds) and current()

        started_at = container.started_at
        startup = probes.get("startup")
        if startup is not None:
            budget = startup.initial_delay + startup.failure_threshold * startup.period
            while current():
                if run_probe(startup, self.address):
                    break
                if time.monotonic() - started_at > budget:
                    self.host.event(
                        f"pod {self.key}: container {container.spec.name} "
                        "failed its startup probe; restarting"
                    )
                    self._restart_container(container, "StartupProbeFailed")
                    return
                if not sleep(FAST_PROBE):
                    return
        if not current():
            return
        self.host.event(f"pod {self.key}: container {container.spec.name} started")
        with self._lock:
            container.started = True
            if "readiness" not in probes:
                container.ready = True
        self.host.changed()
        readiness = probes.get("readiness")
        liveness = probes.get("liveness")
        now = time.monotonic()
        next_ready = now
        next_live = started_at + (liveness.initial_delay if liveness else 0)
        ready_ok = ready_fail = live_fail = 0
        ever_ready = False
        while current():
            now = time.monotonic()
            if readiness is not None and now >= next_ready:
                ok = run_probe(readiness, self.address)
                ready_ok, ready_fail = (ready_ok + 1, 0) if ok else (0, ready_fail + 1)
                before = container.ready
                if not before and ready_ok >= readiness.success_threshold:
                    container.ready = True
                    ever_ready = True
                    self.host.event(f"pod {self.key}: container {container.spec.name} ready")
                elif before and ready_fail >= readiness.failure_threshold:
                    container.ready = False
                if container.ready != before:
                    self.host.changed()
                next_ready = time.monotonic() + (readiness.period if ever_ready else FAST_PROBE)
            if liveness is not None and now >= next_live:
                ok = run_probe(liveness, self.address)
                live_fail = 0 if ok else live_fail + 1
                if live_fail >= liveness.failure_threshold:
                    self.host.event(
                        f"pod {self.key}: container {container.spec.name} "
                        "failed its liveness probe; restarting"
                    )
                    self._restart_container(container, "LivenessProbeFailed")
                    return
                next_live = time.monotonic() + liveness.period
            due = [t for t, p in ((next_ready, readiness), (next_live, liveness)) if p is not None]
            if not due:
                return
            if not sleep(max(min(due) - time.monotonic(), 0.01)):
                return

    def _restart_container(self, container: Container, reason: str) -> None:
        proc = container.proc
        if proc is None or proc.poll() is not None:
            return
        container.reason = reason
        signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(TICK)
        if proc.poll() is None:
            signal_group(proc.pid, signal.SIGKILL)
