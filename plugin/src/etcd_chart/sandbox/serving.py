"""What the sandbox daemon (cluster.py) is built from that is not about Kubernetes: the control
socket and its JSON-line requests, the daemon log, mount points made on this machine for the
pods' bind mounts, and running a program inside a pod's container.

Requests and answers are JSON lines on `STATE/control.sock`: `{"op": "status"}` ->
`{"ok": true, ...}` or `{"ok": false, "code": 1|2, "error": "..."}` (1: the request asks for
something the sandbox cannot do; 2: it could not run). A failed start is written to
`STATE/daemon.error` for the command that spawned the daemon.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socketserver
import subprocess
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from etcd_chart.sandbox import podspec
from etcd_chart.sandbox.launch import launcher_argv
from etcd_chart.sandbox.network import AddressInUse, Network
from etcd_chart.sandbox.runtime import Pod
from etcd_chart.sandbox.state import StateDir, read_json, write_json


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
    """After the daemon is gone (stopped, or died): mount points, routes, the status file."""
    remove_mountpoints(state)
    Network(state.network, state.hosts).remove_routes()
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
    """The answer to the requests that only read or signal (ping, status, exec_spec, kill);
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
