"""The sandbox's state directory: where everything it keeps lives, and the processes it started.

```
STATE/
  control.sock          the daemon's control socket (JSON lines)
  daemon.pid, daemon.log
  processes.json        every process the sandbox started: pid and kernel start time
  network.json          the /24 this state dir uses and each pod's address
  hosts                 the sandbox-wide hosts file, bind-mounted over /etc/hosts in every pod
  resolv.conf           bind-mounted over /etc/resolv.conf: no DNS server outside the sandbox
  kubeconfig            the control plane's admin kubeconfig, for helm and kubectl
  control-plane/        its etcd data, PKI, kubeconfigs and logs (controlplane.py)
  release.json          the release's name, namespace and cluster domain
  status.json           pods, addresses, client URLs, readiness, restarts, TLS client files
  mountpoints.json      container mount points the sandbox created on this machine
  volumes/PV            the local PersistentVolumes (kept by `down`, removed by `down --purge`)
  pods/NS/POD/          per-pod files: emptyDir, ConfigMap/Secret/projected volumes, launch specs
  logs/NS/POD/C.log     each container's output, appended across restarts
```
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

_SOCKET_PATH_MAX = 100


def write_json(path: Path, data: Any) -> None:
    """Replace `path` atomically with `data` as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


class StateDir:
    """Paths inside one sandbox state directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    @property
    def socket(self) -> Path:
        path = self.root / "control.sock"
        if len(str(path)) <= _SOCKET_PATH_MAX:
            return path
        # unix socket paths are limited to 108 bytes: long state dirs get one under /tmp.
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"etcd-chart-sandbox-{digest}.sock"

    def __getattr__(self, name: str) -> Path:
        files = {
            "daemon_pid": "daemon.pid",
            "daemon_log": "daemon.log",
            "processes": "processes.json",
            "network": "network.json",
            "hosts": "hosts",
            "resolv_conf": "resolv.conf",
            "kubeconfig": "kubeconfig",
            "bin_dir": "bin-dir",  # the --bin-dir the daemon was started with, for `upgrade`
            "release": "release.json",
            "status": "status.json",
            "mountpoints": "mountpoints.json",
            "volumes": "volumes",
            "pods": "pods",
            "logs": "logs",
        }
        if name in files:
            return self.root / files[name]
        raise AttributeError(name)

    def is_sandbox(self) -> bool:
        """Whether the directory holds a sandbox's state (a daemon ever ran here)."""
        marks = ("daemon.log", "network.json", "processes.json", "kubeconfig", "control-plane")
        return self.root.is_dir() and any((self.root / mark).exists() for mark in marks)

    def pod_dir(self, namespace: str, pod: str) -> Path:
        return self.root / "pods" / namespace / pod

    def log_file(self, namespace: str, pod: str, container: str) -> Path:
        return self.root / "logs" / namespace / pod / f"{container}.log"


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (field 22 of /proc/PID/stat), to tell a reused PID apart."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    if fields and fields[0] == "Z":
        return None
    return fields[19] if len(fields) > 19 else None


def alive(pid: int, start_time: str | None) -> bool:
    return start_time is not None and process_start_time(pid) == start_time


class ProcessRecord:
    """processes.json: every live process the sandbox started, so `down` finds them all."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    def add(self, key: str, pid: int) -> None:
        with self._lock:
            data = read_json(self.path, {}) or {}
            data[key] = {"pid": pid, "start": process_start_time(pid)}
            write_json(self.path, data)

    def remove(self, key: str) -> None:
        with self._lock:
            data = read_json(self.path, {}) or {}
            if data.pop(key, None) is not None:
                write_json(self.path, data)

    def entries(self) -> dict[str, dict[str, Any]]:
        return dict(read_json(self.path, {}) or {})


def kill_recorded(record: ProcessRecord, grace: float = 10.0) -> list[str]:
    """SIGTERM every recorded process group still alive, SIGKILL after `grace`; names killed."""
    targets = [
        (key, int(entry["pid"]), entry.get("start"))
        for key, entry in record.entries().items()
        if alive(int(entry["pid"]), entry.get("start"))
    ]
    for _, pid, _ in targets:
        signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p, s) for _, p, s in targets):
        time.sleep(0.05)
    for _, pid, start in targets:
        if alive(pid, start):
            signal_group(pid, signal.SIGKILL)
    for key, pid, start in targets:
        for _ in range(100):
            if not alive(pid, start):
                break
            time.sleep(0.02)
        record.remove(key)
    for key in record.entries():
        record.remove(key)
    return [key for key, _, _ in targets]


def signal_group(pid: int, signum: int) -> None:
    """Signal the process group `pid` leads (each container has its own session), else pid."""
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)
